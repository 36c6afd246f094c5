"""Resumable uploads against natftp's own server (issue 14 item 3), with the standard
clients: an interrupted upload is kept under a hidden name beside its target (the file
it replaces stays whole meanwhile); SIZE, then REST+STOR or APPE on the target name
continue it, and it is renamed into place when complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from support.ftpraw import Ctl, recv_all
from support.resumetools import RESUMERS, feed, retr, run, wait_until
from support.servertools import Running

OLD = b"the good old file, which must never be seen half-replaced\n" * 100
NEW = os.urandom(3_000_000) + b"end"
CUT = 1_234_567


def part_of(root: Path, vpath: str) -> Path:
    head, _, name = vpath.rpartition("/")
    return root / head / f".natftp-upload-{name}.part"


def hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".natftp-upload-*"))


def interrupt_stor(r: Running, vpath: str, data: bytes, upto: int) -> None:
    """STOR ``vpath``, send ``upto`` bytes of ``data``, wait until the server has written
    them, then ABOR: an upload interrupted at a known offset."""
    part = part_of(r.root, vpath)
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        d = c.epsv_data()
        assert c.cmd(f"STOR {vpath}").code == 150
        d.sendall(data[:upto])
        wait_until(lambda: part.exists() and part.stat().st_size == upto, "the upload")
        c.send_raw(b"ABOR\r\n")
        r426 = c.read()
        assert r426.code == 426 and "REST+STOR or APPE" in r426.text, r426
        assert c.read().code == 226
        d.close()


@pytest.mark.parametrize("client", list(RESUMERS))
def test_an_interrupted_replacement_is_resumed_and_the_old_file_stays_whole_meanwhile(
        natftp_server: Callable[..., Running], tmp_path: Path, client: str) -> None:
    r = natftp_server(args=["-v"])
    (r.root / "dir").mkdir()
    (r.root / "dir" / "target.bin").write_bytes(OLD)
    local = tmp_path / "new.bin"
    local.write_bytes(NEW)
    interrupt_stor(r, "dir/target.bin", NEW, CUT)
    # meanwhile the good file is whole for every reader, and the partial is hidden
    assert retr(r, "dir/target.bin") == OLD
    assert hidden(r.root) == [".natftp-upload-target.bin.part"]
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200  # SIZE counts bytes in TYPE I (RFC 3659)
        assert c.cmd("SIZE dir/target.bin").text == str(CUT)  # where a resume starts
        d = c.epsv_data()
        assert c.cmd("NLST dir").code in (125, 150)
        assert recv_all(d).split() == [b"dir/target.bin"]
        assert c.read().code == 226
    RESUMERS[client](r, local, "dir/target.bin")
    assert (r.root / "dir" / "target.bin").read_bytes() == NEW
    assert hidden(r.root) == []
    # only the rest crossed the wire again
    assert f"/dir/target.bin: {len(NEW) - CUT} bytes" in r.log, r.log[-3000:]


def _send_queue(pid: int, not_port: int) -> int:
    """Bytes the process ``pid`` has queued to send on its TCP connections other than
    the one to ``not_port`` (the control port): its data connection."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
    total = 0
    for line in out.splitlines():
        f = line.split()
        if f"pid={pid}," in line and not f[4].endswith(f":{not_port}"):
            total += int(f[2])
    return total


def test_natftp_put_killed_mid_transfer_resumes_with_put_c(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    """The issue's case: kill `natftp put big.bin URL/big2.bin` mid-transfer, then
    `natftp put -c`. Mid-transfer means data in flight: the server is stopped for a
    moment so that the client's data connection holds unsent bytes when it is killed
    (its control connection then ends first, as in a real mid-transfer kill). The first
    put reads the file's bytes from a pipe the test feeds, so the transfer cannot end
    before the server is stopped (a 48 MiB file on loopback can go through between two
    looks at the upload's hidden file)."""
    r = natftp_server(args=["-v"])
    big = os.urandom(48 << 20)
    local = tmp_path / "big.bin"
    local.write_bytes(big)
    put = subprocess.Popen([sys.executable, "-m", "natftp", "put", "-", r.url("big2.bin")],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    assert put.stdin is not None
    put.stdin.write(big[:8 << 20])
    put.stdin.flush()
    # the rest goes into the pipe from a thread: it blocks once the server is stopped
    feeder = threading.Thread(target=feed, args=(put.stdin, big[8 << 20:]), daemon=True)
    part = part_of(r.root, "big2.bin")
    stopped = False
    try:
        wait_until(lambda: part.exists() and part.stat().st_size > 0, "the upload")
        r.proc.send_signal(signal.SIGSTOP)
        stopped = True
        feeder.start()
        wait_until(lambda: _send_queue(put.pid, r.port) > 0, "unsent data on the client")
    finally:
        put.send_signal(signal.SIGKILL)
        put.wait(10)
        if stopped:
            r.proc.send_signal(signal.SIGCONT)
        if feeder.is_alive():
            feeder.join(10)
    wait_until(lambda: "refused 426 STOR /big2.bin" in r.log, "the upload to fail")
    assert "what arrived is kept" in r.log
    assert not (r.root / "big2.bin").exists()
    kept = part.stat().st_size
    assert 0 < kept < len(big)
    p = run([sys.executable, "-m", "natftp", "put", "-c", str(local), r.url("big2.bin")])
    assert "nothing to resume" not in p.stderr
    assert (r.root / "big2.bin").read_bytes() == big
    assert f"<- REST {kept}" in r.log
    assert f"STOR /big2.bin: {len(big) - kept} bytes" in r.log
    assert hidden(r.root) == []


def test_put_c_says_when_there_is_nothing_to_resume(server: Running,
                                                    tmp_path: Path) -> None:
    local = tmp_path / "f.bin"
    local.write_bytes(b"whole file")
    p = run([sys.executable, "-m", "natftp", "put", "-c", str(local), server.url("f.bin")])
    assert "nothing to resume at f.bin" in p.stderr and "whole file" in p.stderr
    assert (server.root / "f.bin").read_bytes() == b"whole file"


def test_an_abandoned_partial_is_removed_after_partial_max_age(
        natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(config="[uploads]\npartial_max_age = 1\n")
    interrupt_stor(r, "gone.bin", NEW, 100_000)
    assert hidden(r.root) == [".natftp-upload-gone.bin.part"]
    wait_until(lambda: hidden(r.root) == [], "the abandoned upload to be removed")
    assert "not resumed within 1 s (uploads.partial_max_age)" in r.log
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("SIZE gone.bin").code == 550


def test_partial_max_age_0_keeps_nothing_of_a_failed_upload(
        natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(config="[uploads]\npartial_max_age = 0\n")
    (r.root / "f.bin").write_bytes(OLD)
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        d = c.epsv_data()
        assert c.cmd("STOR f.bin").code == 150
        d.sendall(NEW[:100_000])
        wait_until(lambda: os.path.getsize(part_of(r.root, "f.bin")) == 100_000, "data")
        c.send_raw(b"ABOR\r\n")
        reply = c.read()
        assert reply.code == 426 and "REST+STOR" not in reply.text
        assert c.read().code == 226
        d.close()
        assert c.cmd("SIZE f.bin").text == str(len(OLD))
    assert hidden(r.root) == []
    assert (r.root / "f.bin").read_bytes() == OLD


def test_a_partial_is_shown_only_to_users_who_may_write(
        natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(args=["--anonymous"])
    (r.root / "f.bin").write_bytes(OLD)
    interrupt_stor(r, "f.bin", NEW, 5000)
    with Ctl(r.host, r.port) as c:
        assert c.cmd("USER anonymous").code == 331
        assert c.cmd("PASS guest@example.org").code == 230
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("SIZE f.bin").text == str(len(OLD))


def test_a_busy_upload_is_not_resumed_twice_and_concurrent_stors_both_complete(
        server: Running) -> None:
    """Two sessions: the first upload holds the hidden file; a resume of the same name
    meanwhile gets 450; a plain STOR meanwhile writes to a name of its own. Whichever
    finishes last wins, whole."""
    first, second = b"A" * 200_000, b"B" * 300_000
    with Ctl(server.host, server.port) as a, Ctl(server.host, server.port) as b:
        a.login(server.user, server.password)
        b.login(server.user, server.password)
        assert a.cmd("TYPE I").code == 200 and b.cmd("TYPE I").code == 200
        da = a.epsv_data()
        assert a.cmd("STOR same.bin").code == 150
        da.sendall(first[:1000])
        part = part_of(server.root, "same.bin")
        wait_until(lambda: part.exists() and part.stat().st_size == 1000, "data")
        for cmd in ("APPE same.bin", "REST 10"):
            d = b.epsv_data()
            reply = b.cmd(cmd)
            if cmd.startswith("REST"):
                assert reply.code == 350
                reply = b.cmd("STOR same.bin")
            assert reply.code == 450 and "another session" in reply.text, reply
            d.close()
        db = b.epsv_data()
        assert b.cmd("STOR same.bin").code == 150
        db.sendall(second)
        db.close()
        assert b.read().code == 226
        assert (server.root / "same.bin").read_bytes() == second
        da.sendall(first[1000:])
        da.close()
        assert a.read().code == 226
    assert (server.root / "same.bin").read_bytes() == first
    assert hidden(server.root) == []


def test_dele_of_a_name_removes_its_interrupted_upload(server: Running) -> None:
    interrupt_stor(server, "only-partial.bin", NEW, 4096)
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("DELE only-partial.bin").code == 250
        assert c.cmd("SIZE only-partial.bin").code == 550
        assert c.cmd("DELE only-partial.bin").code == 550
    assert hidden(server.root) == []
