"""Start each benchmarked server on loopback the same way: a user, a passive range, a root.

The C servers and pyftpdlib come from tests/support/peers.py (the suite's own starters:
config, users, passive ranges), natftp from tests/support/servertools.py (``natftp serve``
as a subprocess); only aioftp, which the suite does not run as a server, is started here.
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
sys.path.insert(0, str(HERE.parent / "tests"))  # the tests' helpers: tests/support
sys.path.insert(0, str(HERE.parent / "tests" / "gateway"))

from support import peers, servertools  # noqa: E402

KINDS = ("natftp", "pure-ftpd", "vsftpd", "proftpd", "pyftpdlib", "aioftp")
#: the servers bench/run.py --tls compares (pyftpdlib and aioftp are left out: FTPS
#: there needs pyOpenSSL, or has no server side)
TLS_KINDS = ("natftp", "pure-ftpd", "vsftpd", "proftpd")
#: ProFTPD's mod_tls: Debian's proftpd-mod-crypto, unpacked beside proftpd-core
PROFTPD_MODULES = peers.PEERS_DIR / "proftpd-mod-crypto/usr/lib/proftpd"
MAX_SESSIONS = 20000
# vsftpd logs in as the system user scripts/setup-system.sh creates; every server uses it
USER, PASSWORD = peers.SYSTEM_USER, peers.SYSTEM_PASSWORD


@dataclass(frozen=True)
class TLS:
    """FTPS for every server alike: one certificate (EC P-256, made once per run), TLS 1.3
    only, TLS required on the control connection and on every data connection (AUTH TLS
    before USER, PROT P before a transfer). Session reuse on data connections is left as
    each server has it by default: vsftpd and ProFTPD require it, natftp and Pure-FTPd
    resume when the client offers (the load always does)."""

    cert: Path
    key: Path


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
    #: FTPS (bench/run.py --tls)
    tls: bool = False

    def args(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password, "tls": self.tls}


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
def _natftp(root: Path, passive: tuple[int, int], extra: list[str],
            tls: TLS | None) -> Iterator[Target]:
    tmp = Path(tempfile.mkdtemp(prefix="natftp-bench-natftp-"))
    # max_passive_per_ip = 0: 200 sessions from one address open ports at once
    config = (f"[limits]\nmax_sessions = {MAX_SESSIONS}\nmax_sessions_per_ip = 0\n"
              "max_passive_per_ip = 0\n"
              f"[timeouts]\nidle = 600\n")
    if tls is not None:
        config += (f'[tls]\nenabled = true\ncert = "{tls.cert}"\nkey = "{tls.key}"\n'
                   'required = "data"\nmin_version = "1.3"\n')
    r = servertools.start_server(tmp, root=root, config=config,
                                 args=["--passive-ports", f"{passive[0]}-{passive[1]}",
                                       *extra])
    loop = re.search(r"event loop (\w+)", r.log)
    print(f"natftp serve: event loop {loop.group(1) if loop else '(not logged)'}", flush=True)
    status = re.search(r"status page http://\S+?:(\d+)/", r.log)
    try:
        # the suite's helper logs in as its own user; the benchmark uses the same one
        yield Target("natftp", r.host, r.port, r.user, r.password, root, r.proc.pid,
                     int(status.group(1)) if status else None, tls=tls is not None)
    finally:
        r.stop(signal.SIGKILL, timeout=5)
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def _tls_options(kind: str, tls: TLS) -> tuple[list[str], list[str]]:
    """(config lines, command-line arguments) that turn on FTPS as :class:`TLS` says."""
    if kind == "vsftpd":
        # ssl_ciphers: vsftpd's default is DES-CBC3-SHA (TLS 1.2 only); TLS 1.3 suites
        # are OpenSSL's either way. require_ssl_reuse=YES is vsftpd's default.
        return ["ssl_enable=YES", f"rsa_cert_file={tls.cert}",
                f"rsa_private_key_file={tls.key}", "ssl_ciphers=HIGH",
                "force_local_logins_ssl=YES", "force_local_data_ssl=YES",
                "require_ssl_reuse=YES"], []
    if kind == "proftpd":
        # NoSessionReuseRequired is not set: ProFTPD's default, reuse required
        return [f"ModulePath {PROFTPD_MODULES}", "LoadModule mod_tls.c",
                "<IfModule mod_tls.c>", "  TLSEngine on", "  TLSProtocol TLSv1.3",
                f"  TLSECCertificateFile {tls.cert}",
                f"  TLSECCertificateKeyFile {tls.key}", "  TLSRequired on",
                "  TLSVerifyClient off", "  TLSRenegotiate none", "</IfModule>"], []
    if kind == "pure-ftpd":
        # -Y 3: TLS required on control and data; -J: TLS 1.3 suites only are not a
        # Pure-FTPd switch, the client pins the version
        return [], ["-Y", "3", "-2", f"{tls.cert},{tls.key}"]
    raise ValueError(f"{kind}: no FTPS in the benchmark")


@contextlib.contextmanager
def start(kind: str, root: Path, passive: tuple[int, int],
          natftp_args: list[str] | None = None, tls: TLS | None = None) -> Iterator[Target]:
    """One server serving ``root`` (shared by every server: traversable, owned by the
    natftptest uid) with passive ports ``passive``; FTPS as ``tls`` says, if given."""
    if kind == "natftp":
        with _natftp(root, passive, natftp_args or [], tls) as t:
            yield t
        return
    if tls is not None and kind not in TLS_KINDS:
        raise ValueError(f"{kind}: no FTPS in the benchmark (one of {', '.join(TLS_KINDS)})")
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
    if tls is not None:
        lines, argv = _tls_options(kind, tls)
        if lines:
            opts["extra"] = [*opts.get("extra", []), *lines]  # type: ignore[misc]
        if argv:
            opts["extra_args"] = [*opts.get("extra_args", []), *argv]  # type: ignore[misc]
    with peers.peer_server(kind, **opts) as p:
        yield Target(kind, p.host, p.port, p.user, p.password, root, p.pid,
                     tls=tls is not None)
