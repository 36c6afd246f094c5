"""Issue 21 item 3: bind as root, then drop to ``run_as`` for good; refuse to serve as
root beyond loopback unless told.

The suite runs as root (scripts/setup-system.sh creates the unprivileged ``natftptest``
user these tests drop to).
"""

from __future__ import annotations

import ftplib
import io
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.servertools import RUN_AS_USER as USER
from support.servertools import Running, run_as_tree


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A tree the dropped server can reach."""
    with run_as_tree() as base:
        yield base / "root"


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def _free_privileged_port() -> int:
    for port in range(990, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024 on 127.0.0.1")


def test_the_server_binds_a_privileged_port_then_runs_as_the_user(
        natftp_server: Callable[..., Running], shared_root: Path) -> None:
    pw = pwd.getpwnam(USER)
    port = _free_privileged_port()
    from argon2 import PasswordHasher

    hashed = PasswordHasher().hash("bob's password")
    r = natftp_server(root=shared_root, listen=[f"127.0.0.1:{port}"],
                      args=["--run-as", USER],
                      config=f'[[users]]\nname = "bob"\npassword_hash = "{hashed}"\n')
    assert r.port == port  # bound below 1024: that needed root
    st = _status(r.proc.pid)
    assert st["Uid"].split() == [str(pw.pw_uid)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(pw.pw_gid)] * 4, st["Gid"]
    assert "0" not in st["Groups"].split()
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, st
    assert st["NoNewPrivs"] == "1"
    assert f"privileges dropped: running as {USER}:" in r.log
    ftp = ftplib.FTP()
    ftp.connect(r.host, r.port, timeout=30)
    ftp.login(r.user, r.password)
    ftp.storbinary("STOR made.txt", io.BytesIO(b"by the dropped server"))
    ftp.quit()
    # an argon2 check and the command table, both first used after the drop
    ftp = ftplib.FTP()
    ftp.connect(r.host, r.port, timeout=30)
    ftp.login("bob", "bob's password")
    assert "SIZE" in ftp.sendcmd("FEAT")
    ftp.quit()
    made = (shared_root / "made.txt").stat()
    assert (made.st_uid, made.st_gid) == (pw.pw_uid, pw.pw_gid)


def test_active_mode_from_port_20_keeps_only_cap_net_bind_service(
        natftp_server: Callable[..., Running], shared_root: Path, tmp_path: Path) -> None:
    (shared_root / "f.txt").write_bytes(b"active from port 20")
    os.chown(shared_root / "f.txt", pwd.getpwnam(USER).pw_uid, -1)
    r = natftp_server(root=shared_root, args=["--run-as", f"{USER}:{USER}", "-v"],
                      config="[active]\nsource_port = 20\n")
    st = _status(r.proc.pid)
    assert int(st["CapEff"], 16) == 1 << 10 and int(st["CapPrm"], 16) == 1 << 10, st
    assert int(st["CapInh"], 16) == 0 and st["Uid"].split()[0] != "0"
    out = tmp_path / "got.txt"
    p = subprocess.run(["curl", "-sS", "--max-time", "30", "--ftp-port", "-", "-o", str(out),
                        r.url("f.txt")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == b"active from port 20"
    assert "<- EPRT" in r.log or "<- PORT" in r.log


def test_root_beyond_loopback_is_refused_naming_both_settings(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "natftp", "serve", str(tmp_path), "--listen",
                        "0.0.0.0:0", "--masquerade", "off", "--user", "a:b"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p
    assert "run_as" in p.stderr and "--run-as" in p.stderr
    assert "allow_root = true" in p.stderr and "--allow-root" in p.stderr
    assert "listening on" not in p.stdout


def test_allow_root_serves_as_root_with_a_warning(
        natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(listen=["0.0.0.0:0"], host="127.0.0.1",
                      args=["--masquerade", "off"], config="allow_root = true\n")
    assert _status(r.proc.pid)["Uid"].split()[0] == "0"
    assert "serving as root (allow_root = true)" in r.log


@pytest.mark.parametrize("value, problem", [
    ("no-such-user-xyz", "no user 'no-such-user-xyz'"),
    (f"{USER}:no-such-group-xyz", "no group 'no-such-group-xyz'"),
    ("root", "names root"),
    (f"{USER}:", "not USER[:GROUP]"),
])
def test_a_bad_run_as_stops_the_server_before_it_binds(tmp_path: Path, value: str,
                                                       problem: str) -> None:
    p = subprocess.run([sys.executable, "-m", "natftp", "serve", str(tmp_path), "--listen",
                        "127.0.0.1:0", "--run-as", value], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2, p
    assert f"run_as (--run-as) = \"{value}\"" in p.stderr and problem in p.stderr, p.stderr


def test_a_run_as_user_who_cannot_read_root_is_refused(tmp_path: Path) -> None:
    # tmp_path is root's, mode 0700: natftptest cannot enter it
    p = subprocess.run([sys.executable, "-m", "natftp", "serve", str(tmp_path), "--listen",
                        "127.0.0.1:0", "--run-as", USER], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2, p
    assert f"that user cannot read {tmp_path}" in p.stderr, p.stderr


def test_masquerade_auto_under_run_as_discovers_after_the_drop(shared_root: Path) -> None:
    # natftp serve execs a fresh interpreter, and the UPnP/HTTP clients load on first use:
    # they must be loaded before the drop, since the dropped user may not be able to read
    # the Python installation (this machine's is under /root, mode 0700). The server runs
    # in a network namespace of its own with only lo, so the discovery round it starts
    # finds no router and nothing leaves the namespace.
    script = (f"ip link set lo up && exec {sys.executable} -m natftp serve {shared_root} "
              f"--listen 127.0.0.1:2121 --run-as {USER} --masquerade auto")
    p = subprocess.Popen(["unshare", "-n", "sh", "-c", script], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(p.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("no source told the public address" in x for x in lines):
            assert p.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=60)
        reader.join(timeout=10)
    log = "".join(lines)
    assert "privileges dropped: running as natftptest" in log, log
    # every source was asked (metadata through aiohttp, UPnP through async-upnp-client)
    assert "metadata: aws:" in log and "upnp:" in log, log
    assert "Traceback" not in log and "ModuleNotFoundError" not in log, log
    assert rc == 0 and "natftp: stopped" in log, log
