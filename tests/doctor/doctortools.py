from __future__ import annotations

import asyncio

from natftp.doctor.checks import diagnose
from natftp.doctor.result import Report


def run_doctor(url: str, **kw: object) -> Report:
    kw.setdefault("timeout", 1.5)
    return asyncio.run(diagnose(url, **kw))  # type: ignore[arg-type]
