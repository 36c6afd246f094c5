"""Issue 21 item 6 (and issue 20's brute-force settings): failed logins cannot burn the
CPU, tell which users exist, or go on for ever from one address.

- argon2 checks run in ``limits.login_workers`` threads with ``limits.login_queue``
  waiting at most; a login beyond that gets 421 "busy" at once;
- an unknown user is checked against a dummy hash of the same cost (it takes a worker
  like a known user does);
- ``limits.ban_after`` failures from one address within ``limits.ban_window`` ban it for
  ``limits.ban_time``: new connections and logins get 421, and one line is logged per
  ban, in a shape a fail2ban filter can match.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from availtools import in_process, wait_for

from natftp.proto.addr import ip
from natftp.server.config import ConfigError, from_dict

from support.ftpraw import Ctl
from support.servertools import Running

BAN_LINE = re.compile(r"^\S+ \S+ WARNING natftp\.server ban (?P<host>\S+): (?P<n>\d+) failed "
                      r"logins within \S+ s \(limits\.ban_after = \d+\); refused for \S+ s "
                      r"\(limits\.ban_time\)$", re.M)


def fail_once(srv: Running, user: str = "alice") -> int:
    """One session, one wrong password; the reply code to PASS."""
    with Ctl(srv.host, srv.port, timeout=30) as c:
        if c.banner.code != 220:
            return c.banner.code
        assert c.cmd(f"USER {user}").code == 331
        return c.cmd("PASS wrong-guess").code


def test_failures_across_sessions_ban_the_address_once_then_the_ban_ends(
        natftp_server: Callable[..., Running]) -> None:
    srv = natftp_server(config="[timeouts]\nlogin_failure_delay = 0\n"
                               "[limits]\nban_after = 4\nban_window = 600\nban_time = 4\n")
    assert [fail_once(srv) for _ in range(3)] == [530, 530, 530]
    with Ctl(srv.host, srv.port, timeout=30) as c:
        assert c.cmd("USER nobody").code == 331
        r = c.cmd("PASS guess-4")  # the fourth failure from this address: banned
        assert r.code == 421 and "limits.ban_after" in r.text, r
        with pytest.raises(EOFError):
            c.read()
    # while banned: refused at connection, even with the right password in hand
    for _ in range(5):
        with socket.create_connection((srv.host, srv.port), timeout=30) as s:
            banner = s.recv(300).decode()
        assert banner.startswith("421 Address 127.0.0.1 is refused for"), banner
        assert "failed logins (limits.ban_after)" in banner
    bans = BAN_LINE.findall(srv.log)
    assert bans == [("127.0.0.1", "4")], srv.log[-1500:]

    def logs_in() -> bool:
        with Ctl(srv.host, srv.port, timeout=30) as c:
            if c.banner.code != 220:
                return False
            c.login(srv.user, srv.password)
            return True
    wait_for("a login after ban_time (4 s)", logs_in)
    assert len(BAN_LINE.findall(srv.log)) == 1
    assert "wrong-guess" not in srv.log and "guess-4" not in srv.log


def test_a_ban_refuses_sessions_that_were_already_connected(
        natftp_server: Callable[..., Running]) -> None:
    srv = natftp_server(config="[timeouts]\nlogin_failure_delay = 0\n"
                               "[limits]\nban_after = 2\n")
    with Ctl(srv.host, srv.port, timeout=30) as early:
        assert fail_once(srv) == 530
        assert fail_once(srv) == 421  # banned now
        assert early.cmd(f"USER {srv.user}").code == 331
        r = early.cmd(f"PASS {srv.password}")
        assert r.code == 421 and "is refused for" in r.text, r
    assert len(BAN_LINE.findall(srv.log)) == 1


def test_exempt_networks_are_never_banned(natftp_server: Callable[..., Running]) -> None:
    srv = natftp_server(config="[timeouts]\nlogin_failure_delay = 0\n"
                               '[limits]\nban_after = 2\nban_exempt = ["127.0.0.0/8"]\n')
    assert [fail_once(srv) for _ in range(4)] == [530] * 4
    with Ctl(srv.host, srv.port, timeout=30) as c:
        c.login(srv.user, srv.password)
    assert "ban 127.0.0.1" not in srv.log


def test_ban_settings_are_on_by_default_and_checked() -> None:
    lim = from_dict({}).limits
    assert lim.ban_after > 0 and lim.ban_window > 0 and lim.ban_time > 0
    assert lim.ban_exempt == ()  # loopback is banned too unless configured
    with pytest.raises(ConfigError, match=r"limits\.ban_exempt = \"10\.0\.0\.300/8\""):
        from_dict({"limits": {"ban_exempt": ["10.0.0.300/8"]}})
    with pytest.raises(ConfigError, match=r"limits\.ban_time = -1"):
        from_dict({"limits": {"ban_time": -1}})
    with pytest.raises(ConfigError, match=r"limits\.login_workers = 0"):
        from_dict({"limits": {"login_workers": 0}})


@pytest.fixture(scope="module")
def slow_hash() -> str:
    """An argon2 hash that takes about a second to check: checks overlap for sure."""
    return PasswordHasher(time_cost=120, memory_cost=16384, parallelism=1).hash("right")


def test_password_checks_are_bounded_and_unknown_users_cost_a_check(
        natftp_server: Callable[..., Running], slow_hash: str) -> None:
    srv = natftp_server(users=False, config=(
        "[timeouts]\nlogin_failure_delay = 0\n"
        "[limits]\nlogin_workers = 1\nlogin_queue = 1\nban_after = 0\n"
        f'[[users]]\nname = "bob"\npassword_hash = "{slow_hash}"\n'))
    clients = [Ctl(srv.host, srv.port, timeout=60) for _ in range(3)]
    try:
        for i, c in enumerate(clients):
            assert c.cmd(f"USER ghost{i}").code == 331  # users that do not exist
        for c in clients:
            c.send_raw(b"PASS whatever\r\n")
        replies = [c.read() for c in clients]
    finally:
        for c in clients:
            c.close()
    codes = sorted(r.code for r in replies)
    # one worker and one waiting place: the third unknown-user check finds both taken
    assert codes == [421, 530, 530], replies
    busy = next(r for r in replies if r.code == 421)
    assert "busy" in busy.text and "limits.login_workers" in busy.text
    # a known user with the right password still gets in afterwards
    with Ctl(srv.host, srv.port, timeout=60) as c:
        assert c.cmd("USER bob").code == 331
        assert c.cmd("PASS right").code == 230


def test_the_ban_state_is_there_for_metrics_and_a_status_page(tmp_path: Path) -> None:
    """Server.bans: what issue 20's metrics and status page show."""
    cfg = {"timeouts": {"login_failure_delay": 0}, "limits": {"ban_after": 2}}
    with in_process(tmp_path, cfg) as srv:
        assert srv.call(lambda: srv.srv.bans.active()) == []
        for _ in range(2):
            with Ctl("127.0.0.1", srv.port, timeout=30) as c:
                assert c.cmd("USER alice").code == 331
                c.cmd("PASS nope")
        bans = srv.call(lambda: srv.srv.bans.active())
        total = srv.call(lambda: srv.srv.bans.total)
        banned = srv.call(lambda: srv.srv.bans.banned(ip("127.0.0.1")))
    assert [(str(b.address), b.failures) for b in bans] == [("127.0.0.1", 2)]
    assert bans[0].until - bans[0].since == 900 and total == 1 and banned == bans[0]
