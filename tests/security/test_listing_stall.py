"""Issue 21 item 4: a large directory listing must not stall other sessions, nor hold
its whole output in memory while the client does not read it.

The hostile client of the issue: one 180-byte write of ``STAT mk`` x 20 (mk holds
100,000 entries), replies never read. Before, each STAT was built whole on the event
loop (seconds each): another client's download of a tiny file waited for all twenty,
and the server's RSS rose by ~155 MiB. Now listings are read in a worker thread a chunk
at a time and written only as fast as the client reads.
"""

from __future__ import annotations

import ftplib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from availtools import rss, wait_for

from support.ftpraw import Ctl, recv_all
from support.servertools import Running

ENTRIES = 100_000
#: RSS growth allowed while the listings wait for their readers (before: ~155 MiB)
RSS_BOUND = 48 << 20


@pytest.fixture(scope="module")
def big_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bigdir")
    mk = root / "mk"
    mk.mkdir()
    for i in range(ENTRIES):
        os.close(os.open(mk / f"entry-{i:06d}.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    (root / "tiny.txt").write_bytes(b"tiny\n")
    return root


def small_rcvbuf_socket(host: str, port: int) -> socket.socket:
    """A client socket whose receive window stays small (it never reads): what the
    server writes piles up on the server's side, as with a client far away."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
    s.settimeout(30)
    s.connect((host, port))
    return s


def login_raw(s: socket.socket, user: str, password: str) -> None:
    c = s.makefile("rb")
    assert c.readline().startswith(b"220")
    s.sendall(f"USER {user}\r\nPASS {password}\r\nTYPE I\r\n".encode())
    for want in (b"331", b"230", b"200"):
        line = c.readline()
        assert line.startswith(want), line
    c.close()


@pytest.fixture
def sampled_rss() -> Iterator[Callable[[int], list[int]]]:
    """Start sampling a pid's RSS every 20 ms; the samples list grows until the test
    ends (bounded by the test's own time)."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(pid: int) -> list[int]:
        samples = [rss(pid)]

        def loop() -> None:
            while not stop.wait(0.02):
                samples.append(rss(pid))

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        threads.append(t)
        return samples

    yield start
    stop.set()
    for t in threads:
        t.join(5)


def test_unread_100k_listings_stall_no_other_download_and_memory_stays_flat(
        natftp_server: Callable[..., Running], big_root: Path,
        sampled_rss: Callable[[int], list[int]]) -> None:
    srv = natftp_server(root=big_root)
    pid = srv.proc.pid
    stat_client = small_rcvbuf_socket(srv.host, srv.port)
    list_client = small_rcvbuf_socket(srv.host, srv.port)
    try:
        login_raw(stat_client, srv.user, srv.password)
        login_raw(list_client, srv.user, srv.password)
        baseline = rss(pid)
        samples = sampled_rss(pid)
        # twenty pipelined STATs of the big directory in one write, never read
        stat_client.sendall(b"STAT mk\r\n" * 20)
        # and a LIST of it whose data connection is never read
        list_client.sendall(b"EPSV\r\n")
        reply = list_client.recv(200)
        assert reply.startswith(b"229"), reply
        dport = int(reply.split(b"|||")[1].split(b"|")[0])
        data = socket.socket()
        data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
        data.connect((srv.host, dport))
        list_client.sendall(b"LIST mk\r\n")

        # meanwhile another client logs in and downloads a tiny file, at once
        with Ctl(srv.host, srv.port, timeout=30) as c:
            c.login(srv.user, srv.password)
            assert c.cmd("TYPE I").code == 200
            d = c.epsv_data()
            assert c.cmd("RETR tiny.txt").code == 150
            assert recv_all(d) == b"tiny\n"
            assert c.read().code == 226
        # the download ended while both listings were still waiting for their readers
        log = srv.log
        assert "RETR /tiny.txt: 5 bytes" in log
        assert "STAT /mk:" not in log, "a STAT finished though its client read nothing"
        assert "LIST /mk:" not in log, "the LIST finished though its client read nothing"
        # the server stopped at what the client could not take: it says so, per session
        wait_for("the STAT client's unread replies logged",
                 lambda: "does not read its replies" in srv.log)
        growth = max(samples) - baseline
        assert growth < RSS_BOUND, (f"server RSS grew by {growth >> 20} MiB with unread "
                                    f"listings (bound {RSS_BOUND >> 20} MiB)")
        data.close()
    finally:
        stat_client.close()
        list_client.close()
    with Ctl(srv.host, srv.port, timeout=30) as c:  # both vanished: nothing is stuck
        c.login(srv.user, srv.password)
        assert c.cmd("NOOP").code == 200


@pytest.fixture(scope="module")
def chunked_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of 1,500 entries (three chunks of a streamed listing) and a file."""
    root = tmp_path_factory.mktemp("chunked")
    d = root / "d"
    d.mkdir()
    for i in range(1500):
        (d / f"n{i:04d}").write_bytes(b"x" * (i % 7))
    (root / "file.txt").write_text("f")
    return root


def test_streamed_listings_are_complete_in_every_form(
        natftp_server: Callable[..., Running], chunked_root: Path) -> None:
    srv = natftp_server(root=chunked_root)
    names = sorted(os.listdir(chunked_root / "d"))
    ftp = ftplib.FTP()
    ftp.connect(srv.host, srv.port, timeout=30)
    ftp.login(srv.user, srv.password)
    try:
        assert sorted(n.rsplit("/", 1)[-1] for n in ftp.nlst("d")) == names
        lines: list[str] = []
        ftp.retrlines("LIST d", lines.append)
        assert len(lines) == 1500 and all(ln.startswith("-rw") for ln in lines)
        assert sorted(ln.split()[-1] for ln in lines) == names
        facts = dict(ftp.mlsd("d"))
        assert sorted(facts) == names and facts["n0006"]["size"] == "6"
        assert ftp.nlst("file.txt") == ["file.txt"]
        one: list[str] = []
        ftp.retrlines("LIST file.txt", one.append)
        assert len(one) == 1 and one[0].endswith(" file.txt")
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.retrlines("LIST missing", lines.append)
        with pytest.raises(ftplib.error_perm, match="^550"):
            ftp.nlst("missing")
        assert ftp.voidcmd("NOOP").startswith("200")
    finally:
        ftp.close()
    # STAT PATH: the same entries in one multi-line 213 on the control connection
    with socket.create_connection((srv.host, srv.port), timeout=30) as s:
        login_raw(s, srv.user, srv.password)
        s.sendall(b"STAT d\r\nSTAT missing\r\nNOOP\r\n")
        buf = b""
        while not buf.endswith(b"200 NOOP ok.\r\n"):
            got = s.recv(1 << 16)
            assert got, buf[-300:]
            buf += got
    text = buf.decode()
    head, _, rest = text.partition("\r\n")
    assert head == "213-Status of d"
    body, _, tail = rest.partition("213 End of status.\r\n")
    entries = body.split("\r\n")[:-1]
    assert len(entries) == 1500 and all(e.startswith(" -rw") for e in entries)
    assert sorted(e.split()[-1] for e in entries) == names
    assert tail.startswith("550 STAT refused: /missing") and tail.endswith("200 NOOP ok.\r\n")
    assert "STAT /d: 1500 lines" in srv.log
