"""What the resumable-upload tests share, on disk (tests/server/test_resume_uploads.py)
and on object storage (tests/s3/test_s3_resume.py): the standard clients' resume
(RESUMERS), reading a file back, running a tool, waiting for a condition, feeding a
client's stdin."""

from __future__ import annotations

import contextlib
import ftplib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from support.ftpraw import Ctl, recv_all
from support.servertools import Running


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run scripts/setup-system.sh (apt-get install {name})"
    return path


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def retr(r: Running, vpath: str) -> bytes:
    with Ctl(r.host, r.port, timeout=60) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        d = c.epsv_data()
        assert c.cmd(f"RETR {vpath}").code in (125, 150)
        got = recv_all(d)
        assert c.read().code == 226
        return got


def run(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def feed(pipe: IO[bytes], data: bytes) -> None:
    """Write ``data`` into a child's stdin until it is written or the child is gone."""
    with contextlib.suppress(OSError):
        pipe.write(data)
        pipe.close()


def _lftp(r: Running, command: str) -> None:
    run([tool("lftp"), "-c", f"set ftp:ssl-allow no; set net:max-retries 1; "
         f"set net:timeout 60; open -u {r.user},'{r.password}' -p {r.port} {r.host}; "
         f"{command}"])


def _ftplib(r: Running, local: Path, vpath: str) -> None:
    """ftplib's resume: SIZE (in TYPE I), then storbinary(..., rest=SIZE)."""
    ftp = ftplib.FTP()
    ftp.connect(r.host, r.port, timeout=60)
    ftp.login(r.user, r.password)
    ftp.voidcmd("TYPE I")
    n = ftp.size(vpath)
    assert n is not None
    with open(local, "rb") as f:
        f.seek(n)
        ftp.storbinary(f"STOR {vpath}", f, rest=n)
    ftp.quit()


#: each client's resume of the upload of ``local`` to ``vpath``
RESUMERS: dict[str, Callable[[Running, Path, str], object]] = {
    # curl -C - asks SIZE, then sends the rest with APPE
    "curl": lambda r, local, v: run([tool("curl"), "-sS", "--max-time", "120", "-T",
                                     str(local), "-C", "-", r.url(v)]),
    # lftp: SIZE, REST n, STOR
    "lftp put -c": lambda r, local, v: _lftp(r, f"put -c {local} -o {v}"),
    "lftp reput": lambda r, local, v: _lftp(r, f"reput {local} -o {v}"),
    "ftplib rest=": _ftplib,
    "natftp put -c": lambda r, local, v: run([sys.executable, "-m", "natftp", "put", "-c",
                                              str(local), r.url(v)]),
}
