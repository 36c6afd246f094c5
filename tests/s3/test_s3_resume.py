"""Resumable uploads on object storage (issue 19, issue 14 item 3's design), with the
standard clients against natftp serve --storage s3:// on rclone serve s3.

An interrupted STOR keeps its multipart upload open with the parts that reached the
service whole (8 MiB each), named by a marker under the reserved state prefix; the
object it replaces stays as it was, nothing new is listed. SIZE answers the bytes in
those parts, REST of that + STOR (or APPE) continues with the next part, and completing
it makes the object and removes the state. What the bucket holds is read from rclone's
directory (each object a plain file)."""

from __future__ import annotations

import ftplib
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from s3tools import RcloneS3, ftp, serve

from natftp.storage.s3 import PART_SIZE, STATE

from support.ftpraw import Ctl, recv_all
from support.resumetools import RESUMERS, feed, retr, run, wait_until
from support.servertools import Running

OLD = b"the good old object, which must never be seen half-replaced\n" * 100
NEW = os.urandom(2 * PART_SIZE + 3_000_000) + b"end"
#: what arrives before the ABOR, and what is kept of it: the whole parts
CUT = 2 * PART_SIZE + 1_234_567
KEPT = 2 * PART_SIZE


def state_files(objects: RcloneS3, prefix: str) -> list[Path]:
    """The markers of kept uploads under s3.prefix ``prefix``."""
    d = objects.bucket_dir() / prefix / STATE
    return [p for p in d.rglob("*") if p.is_file()] if d.exists() else []


def interrupt_stor(r: Running, vpath: str, data: bytes, upto: int, *,
                   kept: bool = True) -> None:
    """STOR ``vpath``, send ``upto`` bytes of ``data``, wait until the server has them
    (STAT during the transfer says how many), then ABOR: an upload interrupted at a
    known offset. The 426 comes once the kept parts are recorded (``kept``: it says
    so)."""
    with Ctl(r.host, r.port, timeout=120) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        d = c.epsv_data()
        assert c.cmd(f"STOR {vpath}").code == 150
        d.sendall(data[:upto])

        def received() -> bool:
            st = c.cmd("STAT")
            m = re.search(r"(\d+) bytes so far", st.text)
            assert m, st
            return int(m.group(1)) == upto
        wait_until(received, "the server to receive what was sent")
        c.send_raw(b"ABOR\r\n")
        r426 = c.read()
        assert r426.code == 426 and ("REST+STOR or APPE" in r426.text) == kept, r426
        assert c.read().code == 226
        d.close()


@pytest.mark.parametrize("client", list(RESUMERS))
def test_an_interrupted_replacement_is_resumed_from_its_whole_parts(
        objects: RcloneS3, tmp_path: Path, client: str) -> None:
    prefix = "resume-" + re.sub(r"\W+", "-", client).strip("-")
    r = serve(tmp_path, objects, prefix)
    with ftp(r) as f:
        f.storbinary("STOR dir/target.bin", _bytes(OLD))
    local = tmp_path / "new.bin"
    local.write_bytes(NEW)
    interrupt_stor(r, "dir/target.bin", NEW, CUT)
    # meanwhile the old object is whole for every reader, and nothing new is listed
    assert retr(r, "dir/target.bin") == OLD
    assert len(state_files(objects, prefix)) == 1
    with Ctl(r.host, r.port, timeout=60) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("SIZE dir/target.bin").text == str(KEPT)  # whole parts only
        d = c.epsv_data()
        assert c.cmd("NLST dir").code in (125, 150)
        assert recv_all(d).split() == [b"dir/target.bin"]
        assert c.read().code == 226
        # another offset cannot continue a multipart upload: it says where it can
        reply = c.cmd(f"REST {CUT}")
        assert reply.code == 350
        d = c.epsv_data()
        reply = c.cmd("STOR dir/target.bin")
        assert reply.code == 554 and f"REST {KEPT}" in reply.text, reply
        d.close()
    RESUMERS[client](r, local, "dir/target.bin")
    assert (objects.bucket_dir() / prefix / "dir/target.bin").read_bytes() == NEW
    assert state_files(objects, prefix) == []
    # only the rest crossed the wire again
    assert f"/dir/target.bin: {len(NEW) - KEPT} bytes" in r.log, r.log[-3000:]


def _bytes(data: bytes):  # type: ignore[no-untyped-def]
    import io
    return io.BytesIO(data)


def _data_connection(pid: int, not_port: int) -> tuple[int, int, int] | None:
    """(bytes acknowledged, bytes queued unsent, server port) of the TCP connection of
    process ``pid`` other than the one to ``not_port`` (the control port)."""
    out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True).stdout
    lines = out.splitlines()
    for i, line in enumerate(lines):
        f = line.split()
        if f"pid={pid}," in line and len(f) > 4 and not f[4].endswith(f":{not_port}"):
            info = lines[i + 1] if i + 1 < len(lines) else ""
            m = re.search(r"bytes_acked:(\d+)", info)
            return (int(m.group(1)) if m else 0, int(f[2]), int(f[4].rsplit(":", 1)[1]))
    return None


def _unread_by_server(server_pid: int, port: int) -> int:
    """Bytes the server's kernel holds on its data connection (local ``port``) that the
    server has not read yet."""
    out = subprocess.run(["ss", "-tnpH", f"sport = :{port}"], capture_output=True,
                         text=True).stdout
    return sum(int(line.split()[1]) for line in out.splitlines()
               if f"pid={server_pid}," in line)


def test_natftp_put_killed_mid_transfer_commits_nothing_and_resumes_with_put_c(
        objects: RcloneS3, tmp_path: Path) -> None:
    """kill -9 of the client mid-STOR: its data connection still delivers what it had
    queued and then ends normally, exactly like a complete upload; only the control
    connection, already closed, tells the difference. The object is not completed (the
    old one stays), the whole parts are kept, and `natftp put -c` sends the rest.

    The first put reads the file from a pipe the test feeds: 26 MiB first (so the
    transfer cannot end early), and once the server has read them (three parts filled)
    the server is stopped, the rest fed, and the client killed with unsent data queued
    (a real mid-transfer kill)."""
    r = serve(tmp_path, objects, "killed")
    with ftp(r) as f:
        f.storbinary("STOR big.bin", _bytes(OLD))
    big = os.urandom(48 << 20)
    first = 3 * PART_SIZE + (2 << 20)
    local = tmp_path / "big.bin"
    local.write_bytes(big)
    put = subprocess.Popen([sys.executable, "-m", "natftp", "put", "-", r.url("big.bin")],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    assert put.stdin is not None
    put.stdin.write(big[:first])
    put.stdin.flush()
    feeder = threading.Thread(target=feed, args=(put.stdin, big[first:]), daemon=True)

    def server_read_the_first_bytes() -> bool:
        conn = _data_connection(put.pid, r.port)
        return (conn is not None and conn[0] >= first
                and _unread_by_server(r.proc.pid, conn[2]) < (1 << 20))
    stopped = False
    try:
        wait_until(server_read_the_first_bytes, "the server to read the first parts")
        r.proc.send_signal(signal.SIGSTOP)
        stopped = True
        feeder.start()
        wait_until(lambda: (_data_connection(put.pid, r.port) or (0, 0, 0))[1] > 0,
                   "unsent data on the client")
    finally:
        put.send_signal(signal.SIGKILL)
        put.wait(10)
        if stopped:
            r.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: "refused 426 STOR /big.bin" in r.log, "the upload to fail")
    assert "what arrived is kept" in r.log
    # the truncated upload did not replace the object
    assert (objects.bucket_dir() / "killed/big.bin").read_bytes() == OLD
    with ftp(r) as f:
        f.voidcmd("TYPE I")
        kept = f.size("big.bin")
    assert kept is not None and kept >= 2 * PART_SIZE and kept % PART_SIZE == 0
    assert kept < len(big)
    p = run([sys.executable, "-m", "natftp", "put", "-c", str(local), r.url("big.bin")])
    assert "nothing to resume" not in p.stderr
    assert (objects.bucket_dir() / "killed/big.bin").read_bytes() == big
    assert f"<- REST {kept}" in r.log
    assert f"STOR /big.bin: {len(big) - kept} bytes" in r.log
    assert state_files(objects, "killed") == []


def test_dele_removes_a_kept_upload_and_partial_max_age_0_aborts_them_at_start(
        objects: RcloneS3, tmp_path: Path) -> None:
    """DELE of a name whose only trace is a kept upload removes it (as on disk); a server
    started with uploads.partial_max_age = 0 aborts every kept upload it finds in the
    bucket (another server's: the state is the service's), and keeps none of its own."""
    r = serve(tmp_path, objects, "expire")
    interrupt_stor(r, "a.bin", NEW, CUT)
    interrupt_stor(r, "b.bin", NEW, CUT)
    assert len(state_files(objects, "expire")) == 2
    with ftp(r) as f:
        f.voidcmd("TYPE I")
        assert f.size("a.bin") == KEPT
        assert f.delete("a.bin").startswith("250")
        with pytest.raises(ftplib.error_perm, match="550"):
            f.size("a.bin")
    assert len(state_files(objects, "expire")) == 1
    r.stop()
    r2 = serve(tmp_path, objects, "expire", config="[uploads]\npartial_max_age = 0\n")
    wait_until(lambda: "aborted 1 interrupted upload(s)" in r2.log, "the start sweep")
    assert state_files(objects, "expire") == []
    interrupt_stor(r2, "c.bin", NEW, CUT, kept=False)
    assert state_files(objects, "expire") == []
    with ftp(r2) as f:
        f.voidcmd("TYPE I")
        with pytest.raises(ftplib.error_perm, match="550"):
            f.size("c.bin")
