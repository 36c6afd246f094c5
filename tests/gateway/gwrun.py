"""Start `natftp gateway` as a real subprocess on loopback (killed by PID afterwards)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from support.peers import free_port, free_port_range


@dataclass
class GW:
    host: str
    port: int
    passive: tuple[int, int]
    log: Path
    proc: subprocess.Popen[bytes]
    implicit_port: int | None = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self, user: str, password: str, scheme: str = "ftp") -> str:
        port = self.implicit_port if scheme == "ftps" else self.port
        return f"{scheme}://{user}:{password}@{self.host}:{port}/"


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"gateway not listening on {host}:{port}: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def gateway(upstream: tuple[str, int], *, host: str = "127.0.0.1",
            masquerade: str | None = None, args: Sequence[str] = (),
            implicit: bool = False) -> Iterator[GW]:
    port = free_port(host)
    passive = free_port_range(host, 8, avoid=(port,))
    fd, name = tempfile.mkstemp(prefix="natftp-gw-", suffix=".log")
    os.close(fd)
    log = Path(name)
    cmd = [sys.executable, "-m", "natftp", "gateway", "--listen", f"{host}:{port}",
           "--upstream", f"{upstream[0]}:{upstream[1]}",
           "--passive-ports", f"{passive[0]}-{passive[1]}", "--data-timeout", "8", *args]
    iport = None
    if implicit:
        iport = free_port(host)
        cmd += ["--implicit-listen", f"{host}:{iport}"]
    if masquerade:
        cmd += ["--masquerade", masquerade]
    with open(log, "ab") as lf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=lf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    gw = GW(host, port, passive, log, proc, iport)
    try:
        _wait_port(host, port, proc, log)
        yield gw
    except BaseException:
        print(f"\n----- gateway log -----\n{gw.log_text()[-6000:]}\n-----", file=sys.stderr)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        log.unlink(missing_ok=True)
