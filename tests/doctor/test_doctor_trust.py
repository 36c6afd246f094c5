"""Issue 14, the doctor's part: the URL's scheme is an instruction (no USER/PASS in the
clear when it asks for TLS, proved by a relay that records every byte the doctor
sends), the server is named only from evidence, the timeout holds against a server
that never greets, and fixes for natftp quote natftp's settings.

`natftp doctor` runs as a subprocess against natftp serve on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import servertools
from support.clientpeers import Forwarder, free_port
from support.servertools import Running

#: `natftp serve` on 127.0.0.1 (user alice), a factory fixture killed by PID at the end
serve = servertools.natftp_server

PASSWORD = "s3cret pass"


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "natftp", "doctor", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.fixture
def recorder() -> Iterator[Callable[[tuple[str, int]], Forwarder]]:
    """A relay on 127.0.0.1 to a server that keeps every byte the client sent."""
    made: list[Forwarder] = []

    def make(upstream: tuple[str, int]) -> Forwarder:
        made.append(Forwarder("127.0.0.1", free_port(), upstream[0], upstream[1]))
        return made[-1]

    yield make
    for r in made:
        r.close()


# -- item 4 ------------------------------------------------------------------------------

def test_ftpes_against_a_server_without_tls_stops_before_the_login(
        serve: Callable[..., Running], recorder: Callable[..., Forwarder]) -> None:
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
        serve: Callable[..., Running], recorder: Callable[..., Forwarder],
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
        serve: Callable[..., Running], recorder: Callable[..., Forwarder],
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
