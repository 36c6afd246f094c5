"""Issue 21 item 13: what one session may have queued for writing is bounded, and the
log says why each session ended.

Before, every pipelined command was answered into the transport's buffer whether or not
the client read: uvloop aborted the connection with EINVAL after ~1.6M unread replies,
and the log said nothing. Now a session whose unsent replies pass ``WRITE_HIGH`` handles
no more commands and stops reading until the client reads; it says so once.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from availtools import in_process, wait_for

from natftp.server.session import WRITE_HIGH

from support.ftpraw import Ctl
from support.servertools import Running

NOOPS = 600_000


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_client_that_does_not_read_its_replies_is_not_read_either(
        tmp_path: Path, loop: str) -> None:
    with in_process(tmp_path, loop=loop) as srv:
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
        c.connect(("127.0.0.1", srv.port))
        c.settimeout(60)
        assert c.recv(100).startswith(b"220")
        sender = threading.Thread(target=c.sendall, args=(b"NOOP\r\n" * NOOPS,),
                                  daemon=True)
        sender.start()

        def session() -> Any:
            return next(iter(srv.srv.sessions))

        def unsent() -> int:
            return srv.call(lambda: session().transport.get_write_buffer_size())

        def stopped() -> bool:
            return srv.call(lambda: bool(getattr(session(), "wpaused", False)
                                         and session().paused))

        # the server either stops (reading paused, replies held at the high-water mark)
        # or, as before, piles up far more than that
        wait_for("the session stopped reading, or its unsent replies grew",
                 lambda: stopped() or unsent() > 8 * WRITE_HIGH)
        held = unsent()
        assert held <= WRITE_HIGH + 4096, f"{held} bytes of replies held for one session"
        assert stopped()
        # the client reads now: every command is answered, in order, none lost
        got = 0
        buf = b""
        while got < NOOPS:
            chunk = c.recv(1 << 20)
            assert chunk, f"connection closed after {got} replies"
            buf += chunk
            got += buf.count(b"\n")
            buf = buf[buf.rfind(b"\n") + 1:]
        assert got == NOOPS and buf == b""
        sender.join(30)
        assert not sender.is_alive()
        c.close()


def test_the_log_says_why_each_session_ended(natftp_server: Callable[..., Running]
                                             ) -> None:
    srv = natftp_server(config="[timeouts]\nidle = 2\n")
    with Ctl(srv.host, srv.port) as c:
        c.login(srv.user, srv.password)
        assert c.cmd("QUIT").code == 221
    with Ctl(srv.host, srv.port) as c:
        c.login(srv.user, srv.password)
    with Ctl(srv.host, srv.port) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.cmd("NOOP")
    with Ctl(srv.host, srv.port, timeout=30) as c:
        c.login(srv.user, srv.password)
        assert c.read().code == 421  # idle for 2 s
    # five: the first is the start-up check's (natftp_server waits for the banner)
    wait_for("five sessions closed", lambda: srv.log.count("] closed (") >= 5)
    closed = [ln.split("] closed ", 1)[1] for ln in srv.log.splitlines() if "] closed (" in ln]
    assert closed[1:] == ["(alice): QUIT", "(alice): the client closed the connection",
                      "(not logged in): connection lost: Connection reset by peer",
                      "(alice): idle timeout"], closed
