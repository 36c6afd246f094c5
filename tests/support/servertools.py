"""``natftp serve`` as a real subprocess on loopback, for the server tests.

``natftp_server`` is a factory: ``natftp_server(host="::1", args=[...], config=...)``
starts ``python -m natftp serve`` on port 0 (the server prints the port it got), waits
for the listening line and the 220 banner, and returns a :class:`Running` with host,
port, user, password, root and the log. Every server started is killed by PID at the end.
``server`` is one default instance on 127.0.0.1 with user ``alice``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import peers

PYTHON = sys.executable
USER, PASSWORD = "alice", "s3cret pass"
#: the unprivileged user run_as tests drop to (scripts/setup-system.sh creates it)
RUN_AS_USER = "natftptest"


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    user: str
    password: str
    root: Path
    logfile: Path
    ports: list[int] = field(default_factory=list)

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    @property
    def url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def url(self, path: str = "", *, auth: bool = True) -> str:
        cred = f"{self.user}:{self.password.replace(' ', '%20')}@" if auth else ""
        return f"ftp://{cred}{self.url_host}:{self.port}/{path}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_banner(host: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                data = s.recv(1024)
                assert data.startswith(b"220"), data
                s.sendall(b"QUIT\r\n")
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _no_discovery_from_the_root_namespace(cmd: list[str], config: str | None) -> None:
    """Serving beyond loopback turns on nat.masquerade = auto (issue 8), which would ask
    the host's real gateway (SSDP multicast, NAT-PMP, 169.254.169.254). These servers run
    in the root namespace: such a test must say --masquerade off (or set it)."""
    hosts = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--listen"]
    beyond = [h for h in hosts if not h.startswith(("127.", "[::1]", "localhost"))]
    said = "--masquerade" in cmd or (config is not None and "masquerade" in config)
    if beyond and not said:
        raise AssertionError(f"natftp serve --listen {beyond[0]} in the root namespace "
                             "would run zero-config discovery on the host's network; "
                             "pass args=['--masquerade', 'off']")


def _root_beyond_loopback_is_meant(cmd: list[str], config: str | None) -> None:
    """natftp refuses to serve as root beyond loopback unless told (issue 21: run_as or
    allow_root). The suite runs as root; a test listening on [::] or 0.0.0.0 is about
    something else (dual stack, NAT), so it says allow_root, unless it chose a user."""
    hosts = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--listen"]
    beyond = [h for h in hosts if not h.startswith(("127.", "[::1]", "localhost"))]
    chosen = any(a in ("--run-as", "--allow-root") for a in cmd) or (
        config is not None and ("run_as" in config or "allow_root" in config))
    if beyond and not chosen and os.geteuid() == 0:
        cmd.append("--allow-root")


def start_server(tmp: Path, *, host: str = "127.0.0.1", args: list[str] | None = None,
                 config: str | None = None, users: bool = True, listen: list[str] | None = None,
                 root: Path | None = None, expect_fail: bool = False,
                 env: dict[str, str] | None = None) -> Running:
    root = root or tmp / "root"
    root.mkdir(exist_ok=True)
    logfile = tmp / f"server-{time.monotonic_ns()}.log"
    cmd = [PYTHON, "-m", "natftp", "serve", str(root)]
    for la in listen or [f"[{host}]:0" if ":" in host else f"{host}:0"]:
        cmd += ["--listen", la]
    if users:
        cmd += ["--user", f"{USER}:{PASSWORD}"]
    if config is not None:
        cfg = tmp / f"natftp-{time.monotonic_ns()}.toml"
        cfg.write_text(config)
        cmd += ["--config", str(cfg)]
    cmd += args or []
    _no_discovery_from_the_root_namespace(cmd, config)
    _root_beyond_loopback_is_meant(cmd, config)
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    r = Running(proc, host, 0, USER, PASSWORD, root, logfile)
    if expect_fail:
        proc.wait(20)
        return r
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = logfile.read_text(errors="replace")
        ports = [int(p) for p in re.findall(r"listening on \S*?:(\d+) ", text)]
        if len(ports) >= len(listen or [1]):
            r.ports = ports
            r.port = ports[0]
            break
        if proc.poll() is not None:
            raise AssertionError(f"natftp serve exited {proc.returncode}:\n{text}")
        time.sleep(0.05)
    else:
        r.stop(signal.SIGKILL)
        raise AssertionError(f"natftp serve did not start:\n{logfile.read_text()}")
    wait_banner("127.0.0.1" if host in ("0.0.0.0", "::") else host, r.port)
    return r


@pytest.fixture
def natftp_server(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def make(**kw: object) -> Running:
        r = start_server(tmp_path, **kw)  # type: ignore[arg-type]
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop(signal.SIGKILL, timeout=5)


@pytest.fixture
def server(natftp_server: Callable[..., Running]) -> Running:
    return natftp_server()


@pytest.fixture(params=["127.0.0.1", "::1"])
def any_server(request: pytest.FixtureRequest,
               natftp_server: Callable[..., Running]) -> Running:
    """The same test over IPv4 and IPv6 loopback."""
    return natftp_server(host=request.param)


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 MiB of random bytes."""
    p = tmp_path_factory.mktemp("big") / "random16.bin"
    p.write_bytes(os.urandom(16 << 20))
    return p


def wait_for(cond: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Poll ``cond`` until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port_range(n: int, host: str = "127.0.0.1") -> tuple[int, int]:
    """n consecutive ports that are free right now (for --passive-ports): the peers'
    rule, below the ephemeral range, where the TIME_WAIT sockets of the suite's own
    client connections cannot take them (searching inside the ephemeral range after a
    test that made thousands of connections found no 4 free in a row)."""
    return peers.free_port_range(host, count=n)


@contextmanager
def run_as_tree() -> Iterator[Path]:
    """A directory that ``RUN_AS_USER`` can reach (pytest's tmp_path is root's, mode
    0700), with ``root/`` in it owned by that user; removed afterwards. For tests that
    start natftp as root with ``--run-as``."""
    try:
        pw = pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        pytest.fail(f"user {RUN_AS_USER} is missing: run scripts/setup-system.sh as root",
                    pytrace=False)
    assert os.geteuid() == 0, "these tests drop privileges: run the suite as root"
    base = Path(tempfile.mkdtemp(prefix="natftp-runas-"))
    base.chmod(0o755)
    (base / "root").mkdir()
    os.chown(base / "root", pw.pw_uid, pw.pw_gid)
    try:
        yield base
    finally:
        shutil.rmtree(base)
