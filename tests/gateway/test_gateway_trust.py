"""Issue 14, the gateway's part: one name, one meaning, as in `natftp serve`
(--listen-implicit, a key inside the certificate file, --listen HOST:PORT by the same
rule: a name refused with the same message, a bare port meaning every address), and a
clean stop on SIGTERM. Real gateway and server subprocesses on loopback."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.peers import free_port
from support.servertools import Running, start_server

NATFTP = [sys.executable, "-m", "natftp"]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Running]:
    s = start_server(tmp_path)
    (s.root / "through.txt").write_text("via the gateway\n")
    yield s
    s.stop(signal.SIGKILL, timeout=5)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """Start `natftp ARGS` with its output in a log; every process is killed by PID."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"run{len(procs)}.log"
        with open(log, "wb") as f:
            procs.append(subprocess.Popen([*NATFTP, *args], stdout=f, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL))
        return procs[-1], log

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def wait_listening(proc: subprocess.Popen[bytes], log: Path) -> str:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        text = log.read_text(errors="replace")
        if "listening on" in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {text}")
        time.sleep(0.05)
    raise AssertionError(f"not listening: {log.read_text()}")


def banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        data = s.recv(1024)
        s.sendall(b"QUIT\r\n")
        return data


def natftp_ls(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NATFTP, "ls", *args], capture_output=True, text=True,
                          timeout=60)


def user_url(scheme: str, port: int) -> str:
    return f"{scheme}://alice:s3cret%20pass@127.0.0.1:{port}/"


def test_listen_implicit_in_both_spellings(upstream: Running, launch: Callable[..., tuple[
        subprocess.Popen[bytes], Path]]) -> None:
    for spelling in ("--listen-implicit", "--implicit-listen"):
        port, iport = free_port(), free_port()
        proc, log = launch("gateway", "--listen", f"127.0.0.1:{port}", "--upstream",
                           f"127.0.0.1:{upstream.port}", spelling, f"127.0.0.1:{iport}")
        wait_listening(proc, log)
        r = natftp_ls("-k", user_url("ftps", iport))
        assert r.returncode == 0 and "through.txt" in r.stdout, (spelling, r.stderr)


def test_a_key_inside_the_certificate_file(upstream: Running, tmp_path: Path,
                                           launch: Callable[..., tuple[
                                               subprocess.Popen[bytes], Path]]) -> None:
    """As `natftp serve --tls-cert` reads it: key and certificate in one PEM."""
    import ssl

    from natftp.tls import fingerprint, self_signed

    cert, key = self_signed(tmp_path, ("127.0.0.1",))
    both = tmp_path / "both.pem"
    both.write_text(key.read_text() + cert.read_text())
    port = free_port()
    proc, log = launch("gateway", "--listen", f"127.0.0.1:{port}", "--upstream",
                       f"127.0.0.1:{upstream.port}", "--tls-cert", str(both))
    wait_listening(proc, log)
    pin = fingerprint(ssl.PEM_cert_to_DER_cert(cert.read_text()))
    r = natftp_ls("--fingerprint", pin, user_url("ftpes", port))
    assert r.returncode == 0 and "through.txt" in r.stdout, r.stderr
    proc, log = launch("gateway", "--listen", "127.0.0.1:0", "--upstream",
                       f"127.0.0.1:{upstream.port}", "--tls-key", str(key))
    assert proc.wait(30) == 2
    assert "--tls-key needs --tls-cert" in log.read_text()


def test_sigterm_stops_the_gateway_cleanly(upstream: Running, launch: Callable[..., tuple[
        subprocess.Popen[bytes], Path]]) -> None:
    port = free_port()
    proc, log = launch("gateway", "-v", "--listen", f"127.0.0.1:{port}", "--upstream",
                       f"127.0.0.1:{upstream.port}")
    wait_listening(proc, log)
    r = natftp_ls(user_url("ftp", port))
    assert r.returncode == 0 and "through.txt" in r.stdout, r.stderr
    with socket.create_connection(("127.0.0.1", port), timeout=10) as open_session:
        assert open_session.recv(100).startswith(b"220")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    text = log.read_text()
    assert "stopping (SIGTERM)" in text and "gateway stopped" in text, text
    assert "Traceback" not in text
    assert "s3cret" not in text  # -v logs every session, never a password


def test_listen_names_are_refused_alike_in_serve_and_gateway(
        upstream: Running, tmp_path: Path) -> None:
    """`--listen localhost:2150`: the same reason and fix from both commands (one rule,
    proto.hostport.parse_listen)."""
    why = ("'localhost' is not an IP address (a listener is given an address of this "
           "host, not a name)")
    fix = "write 127.0.0.1:2150 or [::1]:2150 for loopback, :2150 for every address"
    for cmd in (["serve", str(tmp_path), "--listen", "localhost:2150"],
                ["gateway", "--listen", "localhost:2150", "--upstream",
                 f"127.0.0.1:{upstream.port}"]):
        r = subprocess.run([*NATFTP, *cmd], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert why in r.stderr and fix in r.stderr, r.stderr
        assert len(r.stderr.splitlines()) == 1


def test_a_bare_port_listens_on_every_address_in_serve_and_gateway(
        upstream: Running, tmp_path: Path,
        launch: Callable[..., tuple[subprocess.Popen[bytes], Path]]) -> None:
    port = free_port()
    proc, log = launch("serve", str(tmp_path), "--listen", str(port), "--masquerade", "off",
                       "--allow-root")
    text = wait_listening(proc, log)
    assert re.search(rf"listening on \[::\]:{port}\b", text), text
    assert banner(port).startswith(b"220")
    gport = free_port()
    proc, log = launch("gateway", "--listen", str(gport), "--upstream",
                       f"127.0.0.1:{upstream.port}")
    text = wait_listening(proc, log)
    assert f"[::]:{gport}" in text, text
    assert banner(gport).startswith(b"220")


def test_every_gateway_option_has_help_and_a_bad_value_is_refused() -> None:
    import typer

    from natftp.cli import app

    gateway = typer.main.get_command(app).commands["gateway"]  # type: ignore[attr-defined]
    assert [p.name for p in gateway.params if not getattr(p, "help", None)] == []
    for opt, value in (("--max-sessions", "0"), ("--data-timeout", "-5"),
                       ("--idle-timeout", "0")):
        r = subprocess.run([*NATFTP, "gateway", "--listen", "127.0.0.1:0", "--upstream",
                            f"127.0.0.1:{free_port()}", opt, value],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and opt in r.stderr, r.stderr


def test_a_certificate_that_cannot_be_used_is_named_by_its_path(tmp_path: Path) -> None:
    """As serve: the file named, with what is wrong with it (the key inside it or not)."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    for path, why in ((tmp_path / "missing.pem", "no such file"),
                      (junk, "not a PEM certificate with its private key")):
        r = subprocess.run([*NATFTP, "gateway", "--listen", "127.0.0.1:0", "--upstream",
                            f"127.0.0.1:{free_port()}", "--tls-cert", str(path)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert f"--tls-cert {path}: {why}" in r.stderr and len(r.stderr.splitlines()) == 1
