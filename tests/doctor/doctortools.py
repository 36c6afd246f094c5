from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from natftp.doctor.checks import diagnose  # noqa: E402
from natftp.doctor.result import Report  # noqa: E402


def run_doctor(url: str, **kw: object) -> Report:
    kw.setdefault("timeout", 1.5)
    return asyncio.run(diagnose(url, **kw))  # type: ignore[arg-type]
