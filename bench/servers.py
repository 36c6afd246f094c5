"""Start each benchmarked server on loopback the same way: a user, a passive range, a root.

The C servers and pyftpdlib come from tests/peers.py (the suite's own starters: config,
users, passive ranges), natftp from tests/server/servertools.py (``natftp serve`` as a
subprocess); only aioftp, which the suite does not run as a server, is started here.
Every server runs with its transfer/connection logging on and per-command logging off,
and with its session limit raised so that 10,000 sessions are allowed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "server"))
sys.path.insert(0, str(HERE.parent / "tests" / "gateway"))

import peers  # noqa: E402
import servertools  # noqa: E402

KINDS = ("natftp", "pure-ftpd", "vsftpd", "proftpd", "pyftpdlib", "aioftp")
MAX_SESSIONS = 20000
# vsftpd logs in as the system user scripts/setup-system.sh creates; every server uses it
USER, PASSWORD = peers.SYSTEM_USER, peers.SYSTEM_PASSWORD


@dataclass
class Target:
    kind: str
    host: str
    port: int
    user: str
    password: str
    root: Path
    pid: int
    #: natftp with --status-listen: the port of its status page and /metrics
    status_port: int | None = None

    def args(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password}


_AIOFTP_SCRIPT = r"""
import asyncio, json, logging, sys
import aioftp

cfg = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(asctime)s [%(name)s] %(message)s")
logging.getLogger("aioftp.server").setLevel(logging.INFO)
user = aioftp.User(cfg["user"], cfg["password"], base_path=cfg["root"],
                   permissions=[aioftp.Permission("/", readable=True, writable=True)])
server = aioftp.Server([user], data_ports=range(cfg["passive"][0], cfg["passive"][1] + 1))

async def main():
    await server.start(cfg["host"], cfg["port"])
    print("aioftp: listening", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


@contextlib.contextmanager
def _aioftp(root: Path, passive: tuple[int, int]) -> Iterator[Target]:
    host = "127.0.0.1"
    port = peers.free_port(host)
    fd, name = tempfile.mkstemp(prefix="natftp-bench-aioftp-", suffix=".log")
    os.close(fd)
    cfg = {"host": host, "port": port, "user": USER, "password": PASSWORD,
           "root": str(root), "passive": list(passive)}
    with open(name, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", _AIOFTP_SCRIPT, json.dumps(cfg)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        end = time.monotonic() + 15
        while True:
            try:
                peers.read_banner(host, port)
                break
            except OSError as e:
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError("aioftp did not start: "
                                       f"{Path(name).read_text()[-2000:]}") from e
                time.sleep(0.05)
        yield Target("aioftp", host, port, USER, PASSWORD, root, proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        os.unlink(name)


@contextlib.contextmanager
def _natftp(root: Path, passive: tuple[int, int], extra: list[str]) -> Iterator[Target]:
    tmp = Path(tempfile.mkdtemp(prefix="natftp-bench-natftp-"))
    # max_passive_per_ip = 0: 200 sessions from one address open ports at once
    config = (f"[limits]\nmax_sessions = {MAX_SESSIONS}\nmax_sessions_per_ip = 0\n"
              "max_passive_per_ip = 0\n"
              f"[timeouts]\nidle = 600\n")
    r = servertools.start_server(tmp, root=root, config=config,
                                 args=["--passive-ports", f"{passive[0]}-{passive[1]}",
                                       *extra])
    loop = re.search(r"event loop (\w+)", r.log)
    print(f"natftp serve: event loop {loop.group(1) if loop else '(not logged)'}", flush=True)
    status = re.search(r"status page http://\S+?:(\d+)/", r.log)
    try:
        # the suite's helper logs in as its own user; the benchmark uses the same one
        yield Target("natftp", r.host, r.port, r.user, r.password, root, r.proc.pid,
                     int(status.group(1)) if status else None)
    finally:
        r.stop(signal.SIGKILL, timeout=5)
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


@contextlib.contextmanager
def start(kind: str, root: Path, passive: tuple[int, int],
          natftp_args: list[str] | None = None) -> Iterator[Target]:
    """One server serving ``root`` (shared by every server: traversable, owned by the
    natftptest uid) with passive ports ``passive``."""
    if kind == "natftp":
        with _natftp(root, passive, natftp_args or []) as t:
            yield t
        return
    if kind == "aioftp":
        with _aioftp(root, passive) as t:
            yield t
        return
    opts: dict[str, object] = {"root": root, "passive_ports": passive, "user": USER,
                               "password": PASSWORD}
    if kind == "vsftpd":
        opts["extra"] = ["log_ftp_protocol=NO", "idle_session_timeout=600"]
    elif kind == "proftpd":
        opts["extra"] = [f"MaxInstances {MAX_SESSIONS}", "TimeoutIdle 600",
                         "TimeoutNoTransfer 600", "MaxClients none", "MaxClientsPerHost none"]
    elif kind == "pure-ftpd":
        opts["extra_args"] = ["-c", str(MAX_SESSIONS), "-C", str(MAX_SESSIONS), "-I", "10"]
    elif kind == "pyftpdlib":
        opts.update(threaded=False, max_cons=MAX_SESSIONS)
    else:
        raise ValueError(f"unknown server {kind!r}; one of {', '.join(KINDS)}")
    if kind == "vsftpd":
        opts.pop("user")
        opts.pop("password")
    with peers.peer_server(kind, **opts) as p:
        yield Target(kind, p.host, p.port, p.user, p.password, root, p.pid)
