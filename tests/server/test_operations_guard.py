"""Issue 20 on top of issue 21's defences (server/guard.py): bans, the password-check
pool and the rate-limited warning lines in the metrics and on the status page; what a
SIGHUP does to them; a reload under ``run_as``; and the sessions that end by
``timeouts.login`` and ``timeouts.line``.

Every server here is real (``natftp serve`` on loopback, or :class:`Server` in process
where the test drives a reload itself); the metrics are parsed by prometheus_client."""

from __future__ import annotations

import asyncio
import ftplib
import html.parser
import logging
import os
import re
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher, extract_parameters
from opstools import http_get, samples, status_port, value

from natftp.proto.addr import ip
from natftp.server.config import Limits, ServerConfig, from_dict
from natftp.server.guard import Bans, Busy
from natftp.tls import self_signed

from support.servertools import RUN_AS_USER, USER, Running, run_as_tree, wait_for

#: cheap argon2 parameters (a check takes a millisecond): the tests need hashes, not cost
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(http_get(port, "/metrics")[2])


def ftp_reply(sock: socket.socket) -> tuple[int, str]:
    """One reply (single or multi-line) from a raw control connection."""
    buf = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError(buf.decode(errors="replace"))
        buf += chunk
        lines = buf.decode(errors="replace").split("\r\n")
        for line in lines[:-1]:
            if re.match(r"^\d{3} ", line):
                return int(line[:3]), buf.decode(errors="replace")


def attempt(r: Running, user: str, password: str) -> int:
    """A session with one USER/PASS; the code of PASS (or of the banner, if not 220)."""
    with socket.create_connection(("127.0.0.1", r.port), timeout=30) as s:
        code, _ = ftp_reply(s)
        if code != 220:
            return code
        s.sendall(f"USER {user}\r\n".encode())
        assert ftp_reply(s)[0] == 331
        s.sendall(f"PASS {password}\r\n".encode())
        return ftp_reply(s)[0]


class _Bans(html.parser.HTMLParser):
    """The rows of the status page's table of bans in force."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self._row: dict[str, str] | None = None
        self._cells: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and a.get("class") == "ban":
            self._row, self._cells = a, []
        elif tag == "td" and self._row is not None:
            self._cells.append("")

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cells:
            self._cells[-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self._row["cells"] = " | ".join(c.strip() for c in self._cells)
            self.rows.append(self._row)
            self._row = None


@pytest.fixture(scope="module")
def slow_hash() -> str:
    """A hash that takes about a second to check (as tests/security/test_logins.py)."""
    return PasswordHasher(time_cost=120, memory_cost=16384, parallelism=1).hash("right")


def test_metrics_and_status_page_show_bans_busy_logins_and_lines_left_out(
        natftp_server: Callable[..., Running], slow_hash: str) -> None:
    r = natftp_server(config=(
        "[timeouts]\nlogin_failure_delay = 0\n"
        "[limits]\nlogin_workers = 1\nlogin_queue = 1\nban_after = 4\nban_time = 900\n"
        '[status]\nlisten = "127.0.0.1:0"\n'
        f'[[users]]\nname = "bob"\npassword_hash = "{slow_hash}"\n'))
    port = status_port(r)
    got = metrics(port)
    assert value(got, "natftp_login_checks_max") == 2
    assert value(got, "natftp_bans_total") == 0 and value(got, "natftp_bans_in_force") == 0

    # the pool's two places taken (seen in the metrics), a third login is refused busy
    clients = [socket.create_connection(("127.0.0.1", r.port), timeout=60)
               for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            assert ftp_reply(c)[0] == 220
            c.sendall(f"USER ghost{i}\r\n".encode())
            assert ftp_reply(c)[0] == 331
        for c in clients[:2]:
            c.sendall(b"PASS whatever\r\n")
        wait_for(lambda: value(metrics(port), "natftp_login_checks_pending") == 2,
                 "two password checks pending")
        clients[2].sendall(b"PASS whatever\r\n")
        code, text = ftp_reply(clients[2])
        assert code == 421 and "limits.login_workers" in text, text
        assert [ftp_reply(c)[0] for c in clients[:2]] == [530, 530]
    finally:
        for c in clients:
            c.close()

    # two more failures (four with the ghosts' two): the fourth starts the ban
    assert attempt(r, USER, "wrong") == 530
    assert attempt(r, USER, "wrong") == 421
    # then connections are refused, their lines rate-limited: connect until the limit
    # has left some out (bounded: at most 300 connections)
    refused = 0
    while refused < 300:
        with socket.create_connection(("127.0.0.1", r.port), timeout=30) as s:
            code, text = ftp_reply(s)
        assert code == 421 and "is refused for" in text, text
        refused += 1
        if refused % 10 == 0 and value(metrics(port), "natftp_log_lines_suppressed_total",
                                       kind="refused-banned"):
            break
    wait_for(lambda: value(metrics(port), "natftp_sessions_total",
                           result="banned") == refused + 1, "the banned sessions counted")
    got = metrics(port)
    assert value(got, "natftp_bans_total") == 1
    assert value(got, "natftp_bans_in_force") == 1
    assert value(got, "natftp_refusals_total", reason="banned") == refused
    assert value(got, "natftp_refusals_total", reason="login_busy") == 1
    assert value(got, "natftp_sessions_total", result="login_busy") == 1
    assert value(got, "natftp_logins_total", result="failed") == 4
    assert value(got, "natftp_login_checks_pending") == 0
    assert 1 <= value(got, "natftp_log_lines_suppressed_total", kind="refused-banned") < refused
    assert re.search(r"\d+ \S+ WARNING natftp\.server ban 127\.0\.0\.1: 4 failed logins "
                     r"within 600 s \(limits\.ban_after = 4\); refused for 900 s "
                     r"\(limits\.ban_time\)", r.log), r.log[-2000:]

    _, _, page = http_get(port, "/")
    bans = _Bans()
    bans.feed(page)
    assert len(bans.rows) == 1, page
    row = bans.rows[0]
    assert row["data-address"] == "127.0.0.1"
    left = float(row["data-until"]) - time.time()
    assert 800 < left < 901, row  # data-until is rounded to the second
    assert row["cells"].startswith("127.0.0.1 | 4 | "), row
    assert re.search(r"\(in 1[45] min\)$", row["cells"]), row
    assert "1 in force, 1 since start; after 4 failed logins within 600 s, for 900 s" in page
    assert "login_busy 1" in page and f"banned {refused}" in page


def test_sessions_ended_by_the_login_and_line_deadlines_are_counted_apart(
        natftp_server: Callable[..., Running]) -> None:
    # the line deadline (1 s from the line's first byte) comes well before the login
    # deadline (3 s from the connection) for a line sent at once
    r = natftp_server(args=["--status-listen", "127.0.0.1:0"],
                      config="[timeouts]\nlogin = 3\nline = 1\n")
    port = status_port(r)
    with socket.create_connection(("127.0.0.1", r.port), timeout=30) as never:
        assert ftp_reply(never)[0] == 220
        code, text = ftp_reply(never)  # sends nothing: closed by timeouts.login
        assert code == 421 and "timeouts.login" in text, text
    with socket.create_connection(("127.0.0.1", r.port), timeout=30) as slow:
        assert ftp_reply(slow)[0] == 220
        slow.sendall(b"USE")  # a line that never ends: timeouts.line
        code, text = ftp_reply(slow)
        assert code == 421 and "timeouts.line" in text, text
    wait_for(lambda: value(metrics(port), "natftp_sessions_total",
                           result="line_timeout") == 1, "the line deadline's session")
    got = metrics(port)
    assert value(got, "natftp_sessions_total", result="login_timeout") == 1
    assert value(got, "natftp_sessions_total", result="idle_timeout") == 0


# -- SIGHUP and issue 21's state ------------------------------------------------------------

async def _attempt(port: int, user: str, password: str) -> int:
    r, w = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> int:
        while True:
            line = await asyncio.wait_for(r.readline(), 30)
            if not line:
                raise EOFError
            if line[3:4] == b" ":
                return int(line[:3])

    try:
        code = await reply()
        if code != 220:
            return code
        w.write(f"USER {user}\r\n".encode())
        assert await reply() == 331
        w.write(f"PASS {password}\r\n".encode())
        return await reply()
    finally:
        w.close()


def test_reload_updates_bans_password_checks_and_login_workers_in_place(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from natftp.server.app import ReloadRefused, Server

    caplog.set_level(logging.INFO, logger="natftp.server")
    first, second = CHEAP.hash("bob-pw"), PasswordHasher(
        time_cost=2, memory_cost=16, parallelism=1).hash("bob-pw")

    def cfg(limits: dict[str, object], bob: str = first, **top: object) -> ServerConfig:
        return from_dict({"root": str(tmp_path), "listen": ["127.0.0.1:0"],
                          "timeouts": {"login_failure_delay": 0},
                          "limits": {"login_workers": 1, "login_queue": 0, **limits},
                          "users": [{"name": "bob", "password_hash": bob}], **top})

    async def main() -> None:
        server = Server(cfg({"ban_after": 3}))
        port = (await server.start())[0].port
        bans, checks = server.bans, server.passwords
        here = ip("127.0.0.1")
        try:
            assert [await _attempt(port, "bob", "no") for _ in range(3)] == [530, 530, 421]
            assert server.bans.banned(here) is not None
            # an exempt network lifts the ban in force, and is never banned again
            await server.reload(cfg({"ban_after": 3,
                                     "ban_exempt": ["127.0.0.0/8"]}))
            assert server.bans is bans and bans.active() == []
            assert "ban lifted for 127.0.0.1: now in limits.ban_exempt" in caplog.text
            assert [await _attempt(port, "bob", "no") for _ in range(4)] == [530] * 4
            assert await _attempt(port, "bob", "bob-pw") == 230
            # the new after/time apply to the next ban
            await server.reload(cfg({"ban_after": 2, "ban_time": 30}))
            assert [await _attempt(port, "bob", "no") for _ in range(2)] == [530, 421]
            (b,) = bans.active()
            assert (b.failures, b.until - b.since, bans.total) == (2, 30, 2)
            # bans off: the ban in force goes too
            await server.reload(cfg({"ban_after": 0}))
            assert bans.active() == [] and not bans.enabled
            assert "ban lifted for 127.0.0.1: bans are off (limits.ban_after = 0)" in (
                caplog.text)
            assert await _attempt(port, "bob", "bob-pw") == 230

            # the unknown-user dummy hash follows the new users' hash parameters
            assert await _attempt(port, "ghost", "x") == 530
            assert extract_parameters(checks._dummy or "") == extract_parameters(first)
            await server.reload(cfg({"ban_after": 0}, bob=second))
            assert server.passwords is checks
            assert await _attempt(port, "ghost", "x") == 530
            assert extract_parameters(checks._dummy or "") == extract_parameters(second)
            assert await _attempt(port, "bob", "bob-pw") == 230

            # limits.login_workers is live: one worker and no queue refuse the second of
            # two checks started at once; two workers run both
            got = await asyncio.gather(checks.check(None, "a"), checks.check(None, "b"),
                                       return_exceptions=True)
            assert got[0] is False and isinstance(got[1], Busy), got
            await server.reload(cfg({"ban_after": 0,
                                     "login_workers": 2}, bob=second))
            got = await asyncio.gather(checks.check(None, "a"), checks.check(None, "b"),
                                       return_exceptions=True)
            assert got == [False, False], got
            assert checks.workers == 2 and checks.refused == 1

            # what privileges were dropped against needs a restart
            for key, top in (("root", {"root": str(tmp_path / "other")}),
                             ("allow_root", {"allow_root": True})):
                (tmp_path / "other").mkdir(exist_ok=True)
                with pytest.raises(ReloadRefused, match=rf"need a restart: {key}: "):
                    await server.reload(cfg({"ban_after": 0}, bob=second,
                                            **top))
        finally:
            await server.stop()

    asyncio.run(main())


def test_bans_keep_their_count_through_new_after_and_window() -> None:
    """Bans.configure with the clock Bans takes for this: failures counted before a
    reload still count after it, within the new window and up to the new ban_after."""
    now = [0.0]
    bans = Bans(Limits(ban_after=2), clock=lambda: now[0])
    a, c = ip("192.0.2.1"), ip("192.0.2.2")
    assert bans.failed(a) is None
    bans.configure(Limits(ban_after=4))  # raised: the first failure still counts
    assert [bans.failed(a) for _ in range(2)] == [None, None]
    ban = bans.failed(a)
    assert ban is not None and ban.failures == 4
    assert bans.failed(c) is None
    now[0] = 100.0
    bans.configure(Limits(ban_after=2, ban_window=50.0))  # that failure is too old now
    assert bans.failed(c) is None
    now[0] = 120.0
    assert bans.failed(c) is not None
    assert bans.configure(Limits(ban_after=2, ban_window=50.0)) == []  # nothing ruled out
    assert len(bans.active()) == 2


# -- a reload under run_as ------------------------------------------------------------------

@pytest.fixture
def shared() -> Iterator[Path]:
    with run_as_tree() as base:
        yield base


def test_reload_under_run_as_keeps_a_root_only_key_and_checks_new_homes(
        natftp_server: Callable[..., Running], shared: Path) -> None:
    """Started as root with run_as and a key only root can read: a SIGHUP that changes
    the users applies them, and the certificate in use stays (it cannot be read again);
    a new home the dropped user cannot read refuses the reload, naming it."""
    cert, key = self_signed(shared, ("127.0.0.1",), stem="ops")
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)  # root's: the dropped server cannot read it again
    root = shared / "root"
    (root / "private").mkdir(mode=0o700)  # root's, inside the served tree
    cfg = shared / "natftp.toml"
    cfg.write_text("")
    cfg.chmod(0o644)
    r = natftp_server(root=root, args=["--run-as", RUN_AS_USER, "--config", str(cfg),
                                       "--tls-cert", str(cert), "--tls-key", str(key)])
    assert "privileges dropped" in r.log
    bob = CHEAP.hash("bob-pw")
    cfg.write_text(f'[[users]]\nname = "bob"\npassword_hash = "{bob}"\n')
    r.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: configuration" in r.log, "the reload")
    assert "SIGHUP: certificate not reloaded, the current one stays: tls.key" in r.log
    assert "Permission denied" in r.log
    assert "SIGHUP: configuration reloaded (users +bob)" in r.log, r.log[-2000:]
    ctx = ssl.create_default_context(cafile=str(cert))
    with ftplib.FTP_TLS(context=ctx, timeout=30) as ftp:  # the kept certificate
        ftp.connect("127.0.0.1", r.port)
        ftp.login("bob", "bob-pw")
    cfg.write_text(cfg.read_text() + f'[[users]]\nname = "carol"\npassword_hash = "{bob}"\n'
                                      'home = "private"\n')
    r.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in r.log, "the refusal")
    assert re.search(r"configuration not reloaded, the running one stays: run_as "
                     rf'\(--run-as\) = "{RUN_AS_USER}:\S*": that user cannot read \S*/private',
                     r.log), r.log[-2000:]
    with pytest.raises(ftplib.error_perm, match="530"), \
            ftplib.FTP(timeout=30) as ftp:
        ftp.connect("127.0.0.1", r.port)
        ftp.login("carol", "bob-pw")
    assert r.proc.poll() is None
