"""Configuration validation: one error naming key, value and fix; the server won't start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from natftp.server.config import ConfigError, from_dict, load

from support.servertools import Running

HASH = PasswordHasher().hash("pw")


def err(tmp: Path, data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as ei:
        from_dict({"root": str(tmp), **data})
    return str(ei.value)


@pytest.mark.parametrize(("data", "expect"), [
    ({"lisen": ["[::]:21"]}, ["lisen", "unknown key", "did you mean listen"]),
    ({"nat": {"masqerade": "x"}}, ["nat.masqerade", "did you mean nat.masquerade"]),
    ({"read_only": "yes"}, ["read_only", '"yes"', "expected a boolean"]),
    ({"passive": {"ports": "3100-3000"}}, ["passive.ports", "3100-3000", "LOW above HIGH"]),
    ({"passive": {"ports": "30000-70000"}}, ["passive.ports", "outside 1-65535"]),
    ({"passive": {"ports": "2100-2200"}, "listen": ["0.0.0.0:2121"]},
     ["passive.ports", "overlaps the control port 2121"]),
    ({"passive": {"ports": 30000}}, ["passive.ports", "expected a string"]),
    ({"listen": ["localhost:21"]}, ["listen", "not an IP address"]),
    ({"listen": ["0.0.0.0"]}, ["listen", "no port given"]),
    ({"users": [{"name": "bob", "password_hash": HASH, "home": "/etc"}]},
     ["users[0].home", "/etc", "outside ROOT"]),
    ({"users": [{"name": "bob", "password_hash": HASH, "home": "../.."}]},
     ["users[0].home", "outside ROOT"]),
    ({"users": [{"name": "bob", "password_hash": HASH, "home": "missing"}]},
     ["users[0].home", "not an existing directory", "mkdir -p"]),
    ({"users": [{"name": "bob", "password_hash": "plain"}]},
     ["users[0].password_hash", "not an argon2 hash", "natftp passwd"]),
    ({"users": [{"name": "bob"}]}, ["users[0].password_hash", "natftp passwd"]),
    ({"users": [{"name": "bob", "password_hash": HASH, "permissions": {"wirte": False}}]},
     ["users[0].permissions.wirte", "did you mean users[0].permissions.write"]),
    ({"nat": {"advertised_ports": "31000-31009"}}, ["nat.advertised_ports",
                                                    "no passive range"]),
    ({"passive": {"ports": "30000-30009"}, "nat": {"advertised_ports": "31000-31004"}},
     ["nat.advertised_ports", "has 5 ports", "same size"]),
    ({"nat": {"masquerade": "0.0.0.0"}}, ["nat.masquerade", "unspecified"]),
    ({"nat": {"masquerade": "not a host!"}}, ["nat.masquerade", "neither an IP"]),
    ({"nat": {"overrides": [{"networks": ["10.0.0.0/33"], "address": "10.0.0.1"}]}},
     ["nat.overrides[0].networks", "not a network"]),
    ({"timeouts": {"idle": -1}}, ["timeouts.idle", "must be positive"]),
    ({"limits": {"max_line": 100}}, ["limits.max_line", "below 512"]),
    ({"active": {"source_port": 70000}}, ["active.source_port", "not a port"]),
])
def test_each_error_names_key_value_and_fix(tmp_path: Path, data: dict[str, Any],
                                            expect: list[str]) -> None:
    msg = err(tmp_path, data)
    for e in expect:
        assert e in msg, msg
    assert "fix:" in msg


def test_a_full_valid_file_loads(tmp_path: Path) -> None:
    (tmp_path / "alice").mkdir()
    f = tmp_path / "natftp.toml"
    f.write_text(f'''
root = "."
listen = ["0.0.0.0:2121", "[::]:2121"]
banner = "hi"
[passive]
ports = "30000-30009"
[anonymous]
enabled = true
[timeouts]
idle = 60
data = 5.5
[limits]
max_sessions_per_ip = 0
[[users]]
name = "alice"
password_hash = "{HASH}"
home = "alice"
permissions = {{ delete = false }}
[nat]
masquerade = "ftp.example.org"
overrides = [{{ networks = ["10.8.0.0/16"], address = "10.8.0.1" }}]
advertised_ports = "31000-31009"
refresh_interval = 30
[active]
allow_low_ports = true
''')
    cfg = load(f)
    assert cfg.root == tmp_path.resolve()
    assert cfg.passive_ports == (30000, 30009)
    assert cfg.nat.advertised_ports == (31000, 31009)
    u = cfg.user("alice")
    assert u is not None and u.home == tmp_path.resolve() / "alice"
    assert u.permissions.delete is False and u.permissions.write is True
    assert cfg.timeouts.data == 5.5 and cfg.limits.max_sessions_per_ip == 0
    assert cfg.anonymous.enabled


def test_config_user_logs_in_with_the_argon2_hash(natftp_server: Callable[..., Running]
                                                  ) -> None:
    from support.ftpraw import Ctl

    r = natftp_server(users=False, config=f'[[users]]\nname = "carol"\n'
                                          f'password_hash = "{HASH}"\n'
                                          "permissions = { write = false }\n")
    with Ctl(r.host, r.port) as c:
        c.login("carol", "pw")
        reply = c.cmd("MKD x")
        assert reply.code == 257
        data = c.epsv_data()
        reply = c.cmd("STOR f")
        data.close()
        assert reply.code == 550
        assert reply.text == ('Writes are disabled for user "carol" '
                              '(permissions.write = false).')


def test_serve_refuses_to_start_on_a_bad_config(natftp_server: Callable[..., Running]
                                                ) -> None:
    r = natftp_server(config='[passive]\nports = "9-8"\n', expect_fail=True)
    assert r.proc.returncode == 2
    assert "passive.ports (--passive-ports)" in r.log and "fix:" in r.log
    r = natftp_server(args=["--passive-ports", "abc"], expect_fail=True)
    assert r.proc.returncode == 2 and "--passive-ports" in r.log
    r = natftp_server(args=["--user", "nocolon"], expect_fail=True)
    assert r.proc.returncode == 2 and "NAME:PASSWORD" in r.log


def test_source_port_20_needs_the_capability(tmp_path: Path,
                                             natftp_server: Callable[..., Running]) -> None:
    """As root it binds; unprivileged it must refuse to start with a clear error."""
    import os

    r = natftp_server(config="[active]\nsource_port = 20\n",
                      expect_fail=os.geteuid() != 0)
    if os.geteuid() == 0:
        import socket

        from natftp.proto.addr import format_port_arg

        from support.ftpraw import Ctl

        (r.root / "f").write_text("x")
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        with Ctl(r.host, r.port) as c:
            c.login(r.user, r.password)
            assert c.cmd(f"PORT {format_port_arg('127.0.0.1', lsock.getsockname()[1])}"
                         ).code == 200
            c.send_raw(b"RETR f\r\n")
            conn, peer = lsock.accept()
            assert peer[1] == 20  # the classic active-mode source port
            conn.close()
        lsock.close()
    else:
        assert r.proc.returncode == 2 and "active.source_port" in r.log


def test_passwd_prints_a_usable_hash() -> None:
    p = subprocess.run([sys.executable, "-m", "natftp", "passwd", "--password", "x y"],
                       capture_output=True, text=True, timeout=30)
    h = p.stdout.strip()
    assert h.startswith("$argon2id$")
    assert PasswordHasher().verify(h, "x y")


def test_default_user_is_generated_and_printed_once(natftp_server: Callable[..., Running]
                                                    ) -> None:
    import re

    from support.ftpraw import Ctl

    r = natftp_server(users=False)
    m = re.search(r"ftp://natftp:(\S+)@127\.0\.0\.1:(\d+)/", r.log)
    assert m, r.log
    assert int(m.group(2)) == r.port
    assert r.log.count(m.group(1)) == 2  # the password line and the URL, nothing else
    with Ctl(r.host, r.port) as c:
        c.login("natftp", m.group(1))
        assert c.cmd("MKD writable").code == 257


def test_permissions_chmod_defaults_to_the_users_write(tmp_path: Path) -> None:
    def perms(table: dict[str, bool]) -> tuple[bool, bool]:
        cfg = from_dict({"root": str(tmp_path), "users": [
            {"name": "bob", "password_hash": HASH, "permissions": table}]})
        u = cfg.user("bob")
        assert u is not None
        return u.permissions.write, u.permissions.chmod

    assert perms({}) == (True, True)
    assert perms({"write": False}) == (False, False)
    assert perms({"write": False, "chmod": True}) == (False, True)
    assert perms({"chmod": False}) == (True, False)
    msg = err(tmp_path, {"users": [{"name": "bob", "password_hash": HASH,
                                    "permissions": {"chmd": False}}]})
    assert "users[0].permissions.chmd" in msg and "did you mean users[0].permissions.chmod" in msg
