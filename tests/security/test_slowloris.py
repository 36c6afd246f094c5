"""Issue 21 item 7: slowloris. Any byte used to reset the idle timer, so one byte every
few seconds of a line that never ends held a session for ever. Now a command line must
be complete ``timeouts.line`` after its first byte, and a session must log in within
``timeouts.login`` (default 60 s); both close with a 421 that names the setting.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

import pytest

from natftp.proto.replies import ReplyParser
from natftp.server.config import from_dict

from support.ftpraw import Ctl
from support.servertools import Running


def dribble_until_reply(s: socket.socket, first: bytes, step: bytes, *, every: float = 0.4,
                        limit: int = 60) -> bytes:
    """Send ``first``, then ``step`` every ``every`` s (at most ``limit`` times), never a
    line end, until the server says something; return what it said."""
    s.sendall(first)
    for _ in range(limit):
        ready, _, _ = select.select([s], [], [], every)
        if ready:
            return s.recv(4096)
        s.sendall(step)
    raise AssertionError(f"the server still waits after {limit} bytes, {every} s apart")


def closed(s: socket.socket) -> bool:
    s.settimeout(30)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True


def test_a_command_line_that_never_ends_is_closed_after_timeouts_line(
        natftp_server: Callable[..., Running]) -> None:
    srv = natftp_server(config="[timeouts]\nline = 2\n")
    with Ctl(srv.host, srv.port, timeout=30) as c:
        c.login(srv.user, srv.password)
        said = dribble_until_reply(c.sock, b"N", b"O")
        assert said.startswith(b"421 Command line not finished within 2 s (timeouts.line)")
        assert closed(c.sock)
    # the same for a line over limits.max_line, which is being discarded as it comes
    with Ctl(srv.host, srv.port, timeout=30) as c:
        c.login(srv.user, srv.password)
        parser = ReplyParser()
        replies = parser.feed(dribble_until_reply(c.sock, b"X" * 5000, b"x"))
        assert replies[0].code == 500 and "too long" in replies[0].text
        if len(replies) == 1:  # the 421 comes in a later read
            replies += parser.feed(dribble_until_reply(c.sock, b"x", b"x"))
        assert replies[-1].code == 421 and "timeouts.line" in replies[-1].text
        assert closed(c.sock)
    assert "command line not finished in time" in srv.log


def test_lines_that_end_in_time_keep_the_session(natftp_server: Callable[..., Running]
                                                 ) -> None:
    srv = natftp_server(config="[timeouts]\nline = 2\n")
    with Ctl(srv.host, srv.port, timeout=30) as c:
        c.login(srv.user, srv.password)
        ended = time.monotonic() + 4  # twice timeouts.line, in lines of 0.6 s each
        while time.monotonic() < ended:
            c.send_raw(b"NO")
            time.sleep(0.6)
            c.send_raw(b"OP\r\n")
            assert c.read().code == 200


def test_a_session_that_never_logs_in_is_closed_after_timeouts_login(
        natftp_server: Callable[..., Running]) -> None:
    srv = natftp_server(config="[timeouts]\nlogin = 2\n")
    with Ctl(srv.host, srv.port, timeout=30) as idle, \
            Ctl(srv.host, srv.port, timeout=30) as user:
        user.login(srv.user, srv.password)
        # NOOPs keep a session from being idle, not from having to log in
        for _ in range(60):
            r = idle.cmd("NOOP")
            if r.code != 200:
                break
            time.sleep(0.2)
        assert r.code == 421 and "Not logged in within 2 s (timeouts.login)" in r.text, r
        with pytest.raises(EOFError):
            idle.read()
        assert user.cmd("NOOP").code == 200  # logged in before the deadline: stays
    assert "closed (not logged in): not logged in in time" in srv.log


def test_login_and_line_deadlines_have_defaults() -> None:
    t = from_dict({}).timeouts
    assert t.login == 60 and t.line == 30
