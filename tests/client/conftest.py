"""Fixtures for the client's tests: real pyftpdlib servers, killed by PID afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.clientpeers import Server, start_peer


@pytest.fixture
def ftpd(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def factory(*args: str, root: Path | None = None, port: int = 0) -> Server:
        r = root or tmp_path / f"srv{len(started)}"
        r.mkdir(exist_ok=True)
        s = start_peer(r, *args, port=port)
        started.append(s)
        return s

    yield factory
    for s in started:
        s.kill()


@pytest.fixture
def server(ftpd: Callable[..., Server]) -> Server:
    return ftpd()


@pytest.fixture
def scratch() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="natftp-client-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


