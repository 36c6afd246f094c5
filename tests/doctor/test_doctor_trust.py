"""Issue 14, the doctor's part: the URL's scheme is an instruction (no USER/PASS in the
clear when it asks for TLS, proved by a relay that records every byte the doctor
sends), the server is named only from evidence, the timeout holds against a server
that never greets, and fixes for natftp quote natftp's settings.

`natftp doctor` runs as a subprocess against natftp serve on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
from servertools import Running, start_server  # noqa: E402

PASSWORD = "s3cret pass"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def make(**kw: object) -> Running:
        d = tmp_path / f"serve{len(started)}"
        d.mkdir()
        r = start_server(d, **kw)  # type: ignore[arg-type]
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop(signal.SIGKILL, timeout=5)


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "natftp", "doctor", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


class Recorder:
    """A TCP relay on 127.0.0.1 to ``upstream`` that keeps every byte the client sent:
    the proof of what crossed the network in the clear."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sent = bytearray()
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._run, daemon=True)
        self._accept.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                a, _ = self._sock.accept()
            except OSError:
                continue
            b = socket.create_connection(self.upstream, timeout=10)
            for src, dst, keep in ((a, b, True), (b, a, False)):
                t = threading.Thread(target=self._pipe, args=(src, dst, keep), daemon=True)
                t.start()
                self._threads.append(t)

    def _pipe(self, src: socket.socket, dst: socket.socket, keep: bool) -> None:
        src.settimeout(30)
        try:
            while data := src.recv(65536):
                if keep:
                    with self._lock:
                        self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._accept.join(5)
        self._sock.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def recorder() -> Iterator[Callable[[tuple[str, int]], Recorder]]:
    made: list[Recorder] = []

    def make(upstream: tuple[str, int]) -> Recorder:
        made.append(Recorder(upstream))
        return made[-1]

    yield make
    for r in made:
        r.close()


# -- item 4 ------------------------------------------------------------------------------

def test_ftpes_against_a_server_without_tls_stops_before_the_login(
        serve: Callable[..., Running], recorder: Callable[..., Recorder]) -> None:
    s = serve()
    rec = recorder(("127.0.0.1", s.port))
    for args in (["ftpes://alice:s3cret%20pass@127.0.0.1:{p}/"],
                 ["--tls", "ftp://alice:s3cret%20pass@127.0.0.1:{p}/"]):
        r = doctor(*[a.format(p=rec.port) for a in args])
        assert r.returncode == 1, r.stdout + r.stderr
        assert r.stdout.startswith(f"natftp doctor: ftpes://alice@127.0.0.1:{rec.port}/")
        assert "password in the clear" in r.stdout  # the login check says why it waited
        assert "\nFix\n" in r.stdout and "--tls" in r.stdout.split("\nFix\n")[1]
    sent = bytes(rec.sent)
    assert b"AUTH TLS" in sent
    assert b"USER" not in sent and b"PASS" not in sent and b"s3cret" not in sent


def test_ftps_against_an_explicit_tls_port_stops_before_the_login(
        serve: Callable[..., Running], recorder: Callable[..., Recorder],
        tmp_path: Path) -> None:
    s = serve(args=["--tls", "--state-dir", str(tmp_path / "state")])
    rec = recorder(("127.0.0.1", s.port))
    r = doctor(f"ftps://alice:s3cret%20pass@127.0.0.1:{rec.port}/")
    assert r.returncode == 1, r.stdout + r.stderr
    head = r.stdout.splitlines()[0]
    assert head == (f"natftp doctor: ftps://alice@127.0.0.1:{rec.port}/  "
                    "(server: unknown server)")  # no evidence: no name
    fix = r.stdout.split("\nFix\n")[1]
    assert f"ftpes://127.0.0.1:{rec.port}/" in fix
    sent = bytes(rec.sent)
    assert b"USER" not in sent and b"PASS" not in sent and b"s3cret" not in sent
    r = doctor(f"ftpes://alice:s3cret%20pass@127.0.0.1:{s.port}/")  # the right scheme
    assert "Login " in r.stdout and "logged in as alice" in r.stdout, r.stdout


def test_pasv_plain_vs_tls_logs_in_in_the_clear_only_when_asked(
        serve: Callable[..., Running], recorder: Callable[..., Recorder],
        tmp_path: Path) -> None:
    s = serve(args=["--tls", "--state-dir", str(tmp_path / "state")])
    rec = recorder(("127.0.0.1", s.port))
    url = f"ftpes://alice:s3cret%20pass@127.0.0.1:{rec.port}/"
    r = doctor("--json", url)
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["login"]["verdict"] == "ok"
    assert checks["pasv-tls"]["verdict"] == "skip", checks["pasv-tls"]
    assert b"USER alice" not in rec.sent  # every login went inside TLS
    r = doctor("--json", "--compare-plain", url)
    checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["pasv-tls"]["verdict"] == "ok", checks["pasv-tls"]
    assert b"USER alice" in rec.sent  # asked for: one plain login


def test_the_server_is_named_from_evidence(serve: Callable[..., Running]) -> None:
    """natftp with its own banner replaced: its HELP names it, and vsftpd's HELP wording
    (which natftp's starts with too) is not taken for vsftpd."""
    s = serve(config='banner = "Welcome to the archive."\n')
    r = doctor("--json", f"ftp://alice:s3cret%20pass@127.0.0.1:{s.port}/")
    rep = json.loads(r.stdout)
    assert rep["server"] == "natftp", rep["checks"][2]


# -- item 12 -------------------------------------------------------------------------------

def test_the_timeout_holds_against_a_server_that_never_greets() -> None:
    """A port that accepts and stays silent: the doctor waits --timeout for a greeting,
    once, and does not try a login that would wait again. The connections it made are
    counted from the listening socket's queue (it never accepts, never speaks)."""
    with socket.create_server(("127.0.0.1", 0), backlog=32) as silent:
        port = silent.getsockname()[1]
        r = doctor("--timeout", "1", f"ftp://u:p@127.0.0.1:{port}/")
        silent.setblocking(False)
        made = 0
        while True:
            try:
                c, _ = silent.accept()
            except BlockingIOError:
                break
            c.close()
            made += 1
    assert r.returncode == 1
    assert "within 1 s" in r.stdout and "--timeout" in r.stdout
    assert made == 2, made  # the TCP probe and the greeting, no login session


def test_fixes_for_natftp_quote_natftps_settings(serve: Callable[..., Running]) -> None:
    s = serve(args=["--read-only"])
    r = doctor("--json", "--write", f"ftp://alice:s3cret%20pass@127.0.0.1:{s.port}/")
    fixes = " ".join(json.loads(r.stdout)["fix"])
    assert "read_only" in fixes and "permissions.write" in fixes, fixes
    assert "write_enable" not in fixes
    r = doctor("--json", f"ftp://alice:wrong@127.0.0.1:{s.port}/")
    rep = json.loads(r.stdout)
    fixes = " ".join(rep["fix"])
    assert rep["server"] == "natftp" and "natftp passwd" in fixes, fixes
    assert "local_enable" not in fixes and "vsftpd" not in fixes
