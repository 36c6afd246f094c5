"""Run the NAT-lab matrix rows (the exact curl/lftp/ftplib commands of
natftp.lab.matrix.ROWS) against a gateway: on loopback through a local runner, or in a
lab namespace through the Lab itself."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from natftp.lab.matrix import ROWS, Cell, CellCtx, Row

DOWN = "down.bin"


class LocalRunner:
    """Quacks like Lab.run for a cell run on this host (loopback tests)."""

    def run(self, node: str, cmd: Sequence[str], *, timeout: float = 10,
            **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def put_download(root: Path, size: int = 200_000) -> str:
    data = os.urandom(size)
    (root / DOWN).write_bytes(data)
    os.chmod(root / DOWN, 0o644)
    return hashlib.sha256(data).hexdigest()


def make_ctx(runner: Any, *, client: str, client_addr: str, target: str, port: int,
             user: str, password: str, workdir: Path, server_root: Path, down_sha: str,
             tag: str, timeout: float = 8.0) -> CellCtx:
    workdir.mkdir(parents=True, exist_ok=True)
    up = os.urandom(50_000 + len(tag))
    (workdir / "up").write_bytes(up)
    return CellCtx(lab=runner, client=client, client_addr=client_addr, target=target,
                   port=port, user=user, password=password, workdir=workdir,
                   server_root=server_root, down_name=DOWN, down_sha=down_sha,
                   up_src=workdir / "up", up_name=f"up-{tag}.bin",
                   up_sha=hashlib.sha256(up).hexdigest(), timeout=timeout)


def run_rows(jobs: list[tuple[Row, CellCtx]], workers: int = 9) -> dict[str, Cell]:
    def one(job: tuple[Row, CellCtx]) -> tuple[str, Cell]:
        row, ctx = job
        try:
            return row.name, row.run(ctx)
        except Exception as e:  # noqa: BLE001
            return row.name, Cell(False, f"{type(e).__name__}: {e}", 0.0)

    with ThreadPoolExecutor(max_workers=workers) as ex:
        return dict(ex.map(one, jobs))


ROW_NAMES = [r.name for r in ROWS]
ROWS_BY_NAME = {r.name: r for r in ROWS}
