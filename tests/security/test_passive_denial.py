"""Issue 21 item 8: passive data denial.

- A host holding connections to every passive port used to fill the ports' accept
  queues (the server accepted only when the transfer asked, and the client waits for its
  connection before it sends RETR): downloads timed out. Connections are now accepted as
  they arrive; those from another address than the session's are closed at once and
  logged once per source.
- Each new PASV used to start a fresh ``timeouts.data`` for a port nobody connected to,
  so a few sessions repeating PASV held a range for ever. A new PASV now keeps the
  deadline of the port it replaces; ports waiting for a connection are capped per client
  address (``limits.max_passive_per_ip``); and when the range is exhausted the port that
  has waited longest (over 2 s) is given to the new PASV.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable

import pytest

from natftp.proto.addr import parse_227

from support.ftpraw import Ctl, recv_all
from support.servertools import Running, free_port_range


def nlst(c: Ctl, data: socket.socket) -> bytes:
    r = c.cmd("NLST")
    assert r.code in (125, 150), r
    out = recv_all(data)
    assert c.read().code == 226
    return out


def thief_connections(port: int, n: int) -> list[socket.socket]:
    """``n`` connections to ``port`` from 127.0.0.2, left open; each given up to 2 s to
    be established (a full accept queue drops the SYN)."""
    socks = []
    for _ in range(n):
        t = socket.socket()
        t.bind(("127.0.0.2", 0))
        t.setblocking(False)
        err = t.connect_ex(("127.0.0.1", port))
        assert err in (0, errno.EINPROGRESS), err
        select.select([], [t], [], 2)
        socks.append(t)
    return socks


def test_connections_from_elsewhere_cannot_fill_a_passive_port(server: Running) -> None:
    (server.root / "f.txt").write_text("x")
    with Ctl(server.host, server.port, timeout=30) as c:
        c.login(server.user, server.password)
        _, port = parse_227(c.cmd("PASV").text)
        thieves = thief_connections(port, 5)
        try:
            # the client connects after them, and is not kept out
            data = socket.create_connection(("127.0.0.1", port), timeout=10)
            assert nlst(c, data) == b"f.txt\r\n"
            for t in thieves:  # each was closed by the server, no data sent
                t.setblocking(True)
                t.settimeout(10)
                try:
                    assert t.recv(10) == b""
                except ConnectionResetError:
                    pass
        finally:
            for t in thieves:
                t.close()
    lines = [ln for ln in server.log.splitlines() if "port stealing protection" in ln]
    assert len(lines) == 1 and "from 127.0.0.2" in lines[0], lines


def test_a_new_pasv_does_not_renew_a_port_nobody_connected_to(
        natftp_server: Callable[..., Running]) -> None:
    srv = natftp_server(config="[timeouts]\ndata = 4\n")
    with Ctl(srv.host, srv.port, timeout=30) as c:
        c.login(srv.user, srv.password)
        started = time.monotonic()
        assert c.cmd("PASV").code == 227
        time.sleep(2)
        second = parse_227(c.cmd("PASV").text)[1]
        # 5.5 s after the first PASV: its 4 s are over, and the second one had the same
        time.sleep(max(0.0, started + 5.5 - time.monotonic()))
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", second), timeout=10).close()
        r = c.cmd("NLST")
        assert r.code == 425 and "within 4 s (timeouts.data)" in r.text, r


def test_passive_ports_waiting_per_address_are_capped(
        natftp_server: Callable[..., Running]) -> None:
    srv = natftp_server(config="[limits]\nmax_passive_per_ip = 2\n")
    (srv.root / "f.txt").write_text("x")
    with Ctl(srv.host, srv.port) as a, Ctl(srv.host, srv.port) as b, \
            Ctl(srv.host, srv.port) as c:
        for x in (a, b, c):
            x.login(srv.user, srv.password)
        _, port_a = parse_227(a.cmd("PASV").text)
        assert b.cmd("PASV").code == 227
        r = c.cmd("PASV")
        assert r.code == 425 and "limits.max_passive_per_ip" in r.text, r
        assert c.cmd("EPSV").code == 425
        # a's port gets its connection: it no longer waits, so c may have one
        assert nlst(a, socket.create_connection(("127.0.0.1", port_a), timeout=10)) \
            == b"f.txt\r\n"
        assert c.cmd("PASV").code == 227


def test_a_full_range_takes_back_the_port_left_waiting_longest(
        natftp_server: Callable[..., Running]) -> None:
    low, _ = free_port_range(1)
    srv = natftp_server(args=["--passive-ports", f"{low}-{low}"],
                        config="[timeouts]\ndata = 120\n")
    (srv.root / "f.txt").write_text("x")
    with Ctl(srv.host, srv.port) as hog, Ctl(srv.host, srv.port) as b:
        hog.login(srv.user, srv.password)
        b.login(srv.user, srv.password)
        assert parse_227(hog.cmd("PASV").text)[1] == low  # and never connects
        time.sleep(2.5)  # longer than a client ever needs to connect after 227
        r = b.cmd("PASV")
        assert r.code == 227 and parse_227(r.text)[1] == low, r
        assert nlst(b, socket.create_connection(("127.0.0.1", low), timeout=10)) \
            == b"f.txt\r\n"
        r = hog.cmd("NLST")
        assert r.code == 425 and "given to another client" in r.text, r
