"""Issue 21 item 5: connections cannot flood the log.

Under uvloop a connection reset by the peer before ``connection_made`` runs has no peer
address; the server used to raise a TypeError there, one traceback per connection
(25,809 tracebacks, 19.5 MB of log in 5 s). Such connections are now counted
(``Server.counts["reset_at_accept"]``) and nothing is logged. Every per-connection
warning (a refusal by limits, a ban, a stray data connection, a failed TLS handshake) is
written at most 10 times per 10 s per kind, then summed up in one line.
"""

from __future__ import annotations

import logging
import re
import socket
import struct
from collections.abc import Callable
from pathlib import Path

from availtools import in_process, wait_for

from support.ftpraw import Ctl
from support.servertools import Running


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def connect_and_reset(port: int) -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.connect(("127.0.0.1", port))
    s.close()  # RST at once: the server's accept finds a dead connection


def test_connections_reset_at_once_are_counted_without_a_line(tmp_path: Path) -> None:
    h = Records()
    root = logging.getLogger()
    root.addHandler(h)
    try:
        with in_process(tmp_path, loop="uvloop") as srv:
            for _ in range(600):
                connect_and_reset(srv.port)
            # a client after the flood is served as usual
            with Ctl("127.0.0.1", srv.port, timeout=30) as c:
                c.login("alice", "pw")
                assert c.cmd("NOOP").code == 200
            counted = srv.call(lambda: srv.srv.counts["reset_at_accept"])
    finally:
        root.removeHandler(h)
    bad = [r for r in h.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not bad, [r.getMessage() for r in bad[:3]]
    assert counted > 0, "no connection was reset before the server saw it"
    # each one logged nothing at all (not even "connection from" / "closed")
    said = [r for r in h.records if "connection from" in r.getMessage()]
    assert len(said) <= 600 - counted + 1


def test_refused_connections_are_logged_at_most_ten_per_ten_seconds(
        natftp_server: Callable[..., Running]) -> None:
    srv = natftp_server(config="[limits]\nmax_sessions_per_ip = 1\n")
    held = first_session(srv)  # the start-up check's session may still count a moment
    try:
        held.login(srv.user, srv.password)
        for _ in range(150):
            with socket.create_connection((srv.host, srv.port), timeout=30) as s:
                assert s.recv(200).startswith(b"421 Too many sessions from 127.0.0.1")
        wait_for("every refusal written or counted in a summary line",
                 lambda: accounted(srv.log)[0] >= 150)
        assert held.cmd("NOOP").code == 200
    finally:
        held.close()
    total, lines, summaries = accounted(srv.log)
    assert 1 <= lines <= 10 * (summaries + 1), (lines, summaries)
    assert summaries >= 1


def first_session(srv: Running) -> Ctl:
    got: list[Ctl] = []

    def attempt() -> bool:
        try:
            c = Ctl(srv.host, srv.port, timeout=30)
        except (OSError, EOFError):
            return False
        if c.banner.code != 220:
            c.close()
            return False
        got.append(c)
        return True
    wait_for("a first session admitted", attempt)
    return got[0]


def accounted(log: str) -> tuple[int, int, int]:
    """(refusals written + refusals left out, lines written, summary lines)."""
    lines = [ln for ln in log.splitlines() if "refused: Too many sessions" in ln]
    left = [int(n) for n in re.findall(
        r"WARNING natftp.server (\d+) more refused-limit lines left out in 10 s", log)]
    return len(lines) + sum(left), len(lines), len(left)
