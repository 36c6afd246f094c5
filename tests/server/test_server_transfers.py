"""Transfer edge cases: early active-mode data, interrupted uploads, shutdown, timeouts,
both event loops."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import signal
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from natftp.proto.addr import format_port_arg

from support.ftpraw import Ctl, recv_all
from support.servertools import Running


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if p.name.startswith(".natftp-upload-")]


def kept_partial(root: Path, name: str) -> bytes:
    """An interrupted upload stays hidden beside its target, to be resumed (issue 14)."""
    assert leftovers(root) == [f".natftp-upload-{name}.part"]
    return (root / f".natftp-upload-{name}.part").read_bytes()


def test_early_active_data_is_not_lost(server: Running) -> None:
    """FileZilla-style: the client sends the whole upload the moment the server's data
    connection arrives, before reading 150, and closes at once."""
    payload = os.urandom(3 << 20)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("TYPE I").code == 200
        c.send_raw(f"PORT {format_port_arg('127.0.0.1', lsock.getsockname()[1])}\r\n"
                   "STOR early.bin\r\n".encode())
        conn, _ = lsock.accept()
        conn.sendall(payload)
        conn.close()
        assert c.read().code == 200
        assert c.read().code == 150
        assert c.read().code == 226
    lsock.close()
    assert (server.root / "early.bin").read_bytes() == payload


def test_aborted_stor_keeps_the_old_file_and_the_partial_hidden(server: Running) -> None:
    good = os.urandom(1 << 20)
    (server.root / "good.bin").write_bytes(good)
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        c.cmd("TYPE I")
        data = c.epsv_data()
        assert c.cmd("STOR good.bin").code == 150
        data.sendall(b"partial" * 10000)
        time.sleep(0.2)
        c.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n")  # IAC IP IAC DM ABOR, as clients send it
        r = c.read()
        assert r.code == 426 and "aborted by ABOR" in r.text
        assert "resume with REST+STOR or APPE" in r.text
        assert c.read().code == 226
        data.close()
        assert c.cmd("NOOP").code == 200
        assert c.cmd("SIZE good.bin").text == str(len(kept_partial(server.root, "good.bin")))
    assert (server.root / "good.bin").read_bytes() == good
    kept = kept_partial(server.root, "good.bin")
    assert kept and kept == (b"partial" * 10000)[:len(kept)]


def test_control_connection_lost_mid_upload_keeps_the_old_file(server: Running) -> None:
    good = b"good content"
    (server.root / "good.txt").write_bytes(good)
    c = Ctl(server.host, server.port)
    c.login(server.user, server.password)
    data = c.epsv_data()
    assert c.cmd("STOR good.txt").code == 150
    data.sendall(b"x" * 100000)
    time.sleep(0.2)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()  # RST
    time.sleep(0.2)
    data.sendall(b"y" * 1000)
    time.sleep(0.5)
    data.close()
    assert (server.root / "good.txt").read_bytes() == good
    assert set(kept_partial(server.root, "good.txt")) <= {ord("x"), ord("y")}


def test_data_connection_reset_mid_upload_keeps_the_old_file(server: Running) -> None:
    good = b"good content"
    (server.root / "good.txt").write_bytes(good)
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        data = c.epsv_data()
        assert c.cmd("STOR good.txt").code == 150
        data.sendall(b"x" * 100000)
        data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        b"\x01\x00\x00\x00\x00\x00\x00\x00")
        data.close()
        r = c.read()
        # an RST is a failure (426); a FIN would have been a complete upload
        assert r.code == 426, r
        assert c.cmd("NOOP").code == 200
    assert (server.root / "good.txt").read_bytes() == good
    assert set(kept_partial(server.root, "good.txt")) <= {ord("x")}


def test_sigterm_mid_upload_stops_cleanly_and_keeps_the_partial(
        natftp_server: Callable[..., Running]) -> None:
    r = natftp_server()
    good = b"good content"
    (r.root / "good.txt").write_bytes(good)
    c = Ctl(r.host, r.port)
    c.login(r.user, r.password)
    data = c.epsv_data()
    assert c.cmd("STOR good.txt").code == 150
    data.sendall(b"x" * 100000)
    time.sleep(0.3)
    assert leftovers(r.root)  # the upload is in flight, in a temporary file
    assert r.stop(signal.SIGTERM) == 0
    replies = []
    try:
        while True:
            replies.append(c.read().code)
    except (EOFError, OSError):
        pass
    assert 421 in replies
    assert (r.root / "good.txt").read_bytes() == good
    # kept to be resumed after the restart (uploads.partial_max_age)
    assert set(kept_partial(r.root, "good.txt")) == {ord("x")}
    assert "natftp: stopped" in r.log
    c.close()
    data.close()


def test_stalled_transfer_times_out_with_426(natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(config="[timeouts]\ndata = 1\n")
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        data = c.epsv_data()
        assert c.cmd("STOR slow.bin").code == 150
        reply = c.read()
        assert reply.code == 426 and "timeouts.data" in reply.text
        assert c.cmd("NOOP").code == 200
        data.close()
    assert not (r.root / "slow.bin").exists()
    assert leftovers(r.root) == []


def test_passive_without_a_connection_times_out_with_425(
        natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(config="[timeouts]\ndata = 1\n")
    (r.root / "f").write_text("x")
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("EPSV").code == 229
        time.sleep(1.3)
        r2 = c.cmd("RETR f")  # the data connection is made before 150, as vsftpd does
        assert r2.code == 425 and "timeouts.data" in r2.text
        assert c.cmd("RETR f").code == 425  # no data connection set up any more


def test_active_connect_refused_gives_425(server: Running) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there
    (server.root / "f").write_text("x")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd(f"PORT {format_port_arg('127.0.0.1', port)}").code == 200
        r = c.cmd("RETR f")
        assert r.code == 425 and "Connection refused" in r.text and "passive" in r.text


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_event_loops_move_16_mib_both_ways(natftp_server: Callable[..., Running],
                                                big_file: Path, loop: str) -> None:
    r = natftp_server(args=["--loop", loop])
    assert f"event loop {loop}" in r.log
    data = big_file.read_bytes()
    f = ftplib.FTP(timeout=30)
    f.connect(r.host, r.port)
    f.login(r.user, r.password)
    f.storbinary("STOR b.bin", io.BytesIO(data))
    out = io.BytesIO()
    f.retrbinary("RETR b.bin", out.write, rest=1000)
    f.storlines("STOR t.txt", io.BytesIO(b"l1\nl2\n" * 100000))
    lines: list[str] = []
    f.retrlines("RETR t.txt", lines.append)
    f.quit()
    assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(data[1000:]).digest()
    assert lines == ["l1", "l2"] * 100000


def test_list_and_nlst_and_stat_of_a_path(server: Running) -> None:
    (server.root / "d").mkdir()
    (server.root / "d" / "x.txt").write_bytes(b"123")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        data = c.epsv_data()
        assert c.cmd("LIST -la d").code == 150
        text = recv_all(data).decode()
        assert c.read().code == 226
        assert text.startswith("-rw-r--r--") and text.endswith(" x.txt\r\n")
        data = c.epsv_data()
        assert c.cmd("NLST d").code == 150
        assert recv_all(data) == b"d/x.txt\r\n"
        assert c.read().code == 226
        r = c.cmd("STAT d")
        assert r.code == 213 and any(line.endswith(" x.txt") for line in r.lines)
        r = c.cmd("MLSD d/x.txt")
        assert r.code == 501


def test_rest_beyond_the_end_and_missing_files(server: Running) -> None:
    (server.root / "f").write_bytes(b"abc")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        data = c.epsv_data()
        assert c.cmd("REST 10").code == 350
        r = c.cmd("RETR f")
        assert r.code == 554 and "beyond the end" in r.text
        r = c.cmd("RETR nothere")
        assert r.code == 550 and "no such file" in r.text
        data.close()
        assert c.cmd("REST abc").code == 501


def test_retr_whose_data_connection_is_there_before_the_command(server: Running) -> None:
    """The synchronous RETR (the data connection came before RETR, binary, in the clear):
    a small file comes whole with 150 then 226; a large one fills the socket while the
    client is not reading and then goes on in the background; REST is honoured; the
    log names every byte."""
    small = os.urandom(4096)
    big = os.urandom(24 << 20)
    (server.root / "small.bin").write_bytes(small)
    (server.root / "big.bin").write_bytes(big)
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("TYPE I").code == 200
        for _ in range(3):
            data = c.epsv_data()
            time.sleep(0.05)  # the connection is queued before RETR arrives
            r = c.cmd("RETR small.bin")
            assert r.code == 150 and "(4096 bytes)" in r.text
            assert recv_all(data) == small
            assert c.read().code == 226
        data = c.epsv_data()
        time.sleep(0.05)
        assert c.cmd("RETR big.bin").code == 150  # the socket filled: the 150 came then
        time.sleep(0.5)  # not reading: the transfer waits for the socket
        assert recv_all(data) == big
        assert c.read().code == 226
        assert c.cmd("REST 1000").code == 350
        data = c.epsv_data()
        time.sleep(0.05)
        assert c.cmd("RETR big.bin").code == 150
        got = recv_all(data)
        assert c.read().code == 226
        assert hashlib.sha256(got).digest() == hashlib.sha256(big[1000:]).digest()
    assert f"RETR /big.bin: {len(big) - 1000} bytes" in server.log
    assert "RETR /small.bin: 4096 bytes" in server.log


def test_retr_to_a_data_connection_reset_before_the_command_gives_426(
        server: Running) -> None:
    (server.root / "f.bin").write_bytes(os.urandom(1 << 20))
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("TYPE I").code == 200
        data = c.epsv_data()
        data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        data.close()  # RST
        time.sleep(0.1)
        r = c.cmd("RETR f.bin")
        if r.code == 150:
            r = c.read()
        assert r.code == 426 and "data connection or file failed" in r.text, r
        assert c.cmd("NOOP").code == 200
