"""Bad input gets exact reply codes, is logged, and the server keeps serving."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest

from support.ftpraw import Ctl, recv_all
from support.servertools import Running


def still_serves(r: Running) -> None:
    """A fresh client logs in and lists: nothing earlier broke the server."""
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        data = c.epsv_data()
        assert c.cmd("NLST").code in (125, 150)
        recv_all(data)
        assert c.read().code == 226


@pytest.mark.parametrize("path", ["..", "../", "../../etc/passwd", "/../etc/passwd",
                                  "a/../../x", "/.."])
def test_traversal_is_refused_with_550_and_logged(server: Running, path: str) -> None:
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        cmds = [f"SIZE {path}", f"MKD {path}/x", f"DELE {path}"]
        if path.strip("./"):  # names something: CWD refuses it (`..` alone stays at /)
            cmds.append(f"CWD {path}")
        for cmd in cmds:
            r = c.cmd(cmd)
            assert r.code == 550, (cmd, r)
            assert "above the home directory" in r.text
        assert c.cmd("PWD").text.startswith('"/"')
    assert "leads above the home directory" in server.log
    still_serves(server)


def test_absolute_paths_stay_inside_the_home(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("SIZE /etc/passwd").code == 550
        assert c.cmd("CWD /etc").code == 550
        (server.root / "etc").mkdir()
        assert c.cmd("CWD /etc").code == 250
        assert c.cmd("PWD").text.startswith('"/etc"')


def test_symlink_escape_is_refused(server: Running, tmp_path: os.PathLike[str]) -> None:
    outside = server.root.parent / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    os.symlink(outside, server.root / "link")
    os.symlink(outside / "secret.txt", server.root / "secret-link.txt")
    os.symlink("inside.txt", server.root / "good-link.txt")
    (server.root / "inside.txt").write_text("fine")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        for cmd in ("CWD link", "SIZE link/secret.txt", "SIZE secret-link.txt",
                    "MLST link", "MKD link/new", "DELE link/secret.txt", "RNFR link/secret.txt",
                    "STAT link", "MLSD link"):
            r = c.cmd(cmd)
            assert r.code == 550, (cmd, r)
            assert "outside the home" in r.text, (cmd, r)
        data = c.epsv_data()
        assert c.cmd("RETR secret-link.txt").code == 550
        data.close()
        data = c.epsv_data()
        assert c.cmd("STOR link/planted.txt").code == 550
        data.close()
        assert c.cmd("SIZE good-link.txt").text == "4"  # a link inside is fine
        data = c.epsv_data()
        assert c.cmd("NLST").code in (125, 150)
        names = recv_all(data).decode().split()
        assert c.read().code == 226
        assert "link" not in names and "secret-link.txt" not in names
    assert not (outside / "planted.txt").exists()
    assert (outside / "secret.txt").read_text() == "secret"
    assert "outside the home directory" in server.log
    still_serves(server)


def test_nul_and_overlong_names_are_refused(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        c.send_raw(b"MKD a\x00b\r\n")
        assert c.read().code == 501
        r = c.cmd("MKD " + "x" * 300)
        assert r.code == 550 and "longer than 255 bytes" in r.text
    still_serves(server)


def test_commands_before_login_get_530(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        for cmd in ("LIST", "RETR x", "STOR x", "CWD /", "PWD", "PASV", "EPSV",
                    "PORT 127,0,0,1,200,1", "MKD d", "DELE x", "SIZE x", "MLSD", "STAT /"):
            r = c.cmd(cmd)
            assert r.code == 530, (cmd, r)
        assert c.cmd("NOOP").code == 200
        assert c.cmd("SYST").code == 215
        assert c.cmd("FEAT").code == 211
        assert c.cmd("PASS x").code == 503


def test_unknown_and_unimplemented_commands(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        r = c.cmd("FOO bar")
        assert r.code == 500 and "FOO" in r.text
        r = c.cmd("AUTH TLS")
        assert r.code == 502 and "TLS" in r.text
        assert c.cmd("ACCT x").code == 502
        assert c.cmd("SITE CHMOD 777 x").code == 530  # SITE HELP works before login
        c.login(server.user, server.password)
        assert c.cmd("XYZZY").code == 500
        r = c.cmd("RETR")
        assert r.code == 501 and "needs an argument" in r.text


def test_5000_byte_line_is_refused_and_the_session_goes_on(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        c.send_raw(b"USER " + b"a" * 5000 + b"\r\n")
        r = c.read()
        assert r.code == 500 and "too long" in r.text
        c.login(server.user, server.password)
        assert c.cmd("NOOP").code == 200
    still_serves(server)


def test_garbage_bytes_get_500_and_the_server_survives(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        c.send_raw(bytes(range(1, 10)) + b"\xfe\xfd\x80\x81garbage!!\r\n")
        r = c.read()
        assert r.code == 500
        c.send_raw(b"\r\n")
        assert c.read().code == 500
        c.send_raw(os.urandom(3000).replace(b"\n", b"") + b"\r\n")
        assert c.read().code in (500, 501)
        assert c.cmd("NOOP").code == 200
    with socket.create_connection((server.host, server.port)) as s:
        s.recv(100)
        s.sendall(os.urandom(100_000))  # then vanish mid-line
    still_serves(server)


def test_port_to_a_foreign_address_or_port_21_is_refused(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        r = c.cmd("PORT 192,0,2,1,200,10")
        assert r.code == 501 and "not your address" in r.text and "bounce" in r.text
        r = c.cmd("PORT 127,0,0,1,0,21")
        assert r.code == 501 and "below 1024" in r.text
        r = c.cmd("EPRT |1|192.0.2.1|5000|")
        assert r.code == 501
        r = c.cmd("EPRT |2|::1|5000|")
        assert r.code == 522
        assert c.cmd("PORT 1,2,3").code == 501
        assert c.cmd("PORT 127,0,0,1,200,300").code == 501
    assert "FTP bounce protection" in server.log
    still_serves(server)


def test_foreign_address_allowed_when_configured(natftp_server: Callable[..., Running]
                                                 ) -> None:
    r = natftp_server(config="[active]\nallow_foreign_address = true\nallow_low_ports = true\n")
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("PORT 127,0,0,2,0,21").code == 200


def test_failed_logins_are_delayed_logged_and_limited(natftp_server: Callable[..., Running]
                                                      ) -> None:
    r = natftp_server(config="[timeouts]\nlogin_failure_delay = 0.3\n"
                             "[limits]\nmax_login_attempts = 2\n")
    with Ctl(r.host, r.port) as c:
        assert c.cmd("USER alice").code == 331
        r1 = c.cmd("PASS wrong-password-xyz")
        assert r1.code == 530
        # meanwhile another client is served at once (the delay blocks nobody)
        still_serves(r)
        assert c.cmd("USER nobody").code == 331
        assert c.cmd("PASS another-wrong-pw").code == 421
        with pytest.raises(EOFError):
            c.read()
    log = r.log
    assert "login failed for 'alice'" in log and "wrong password" in log
    assert "unknown user" in log
    assert "wrong-password-xyz" not in log and "another-wrong-pw" not in log
    assert r.password not in log


def test_password_never_logged_even_in_debug(natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(args=["-v"])
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
    assert "PASS ****" in r.log
    assert r.password not in r.log


def test_writes_refused_for_read_only_with_the_reason(natftp_server: Callable[..., Running]
                                                      ) -> None:
    r = natftp_server(args=["--read-only"])
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        for cmd in ("STOR x", "MKD d", "DELE x", "RNFR x", "APPE x", "RMD d"):
            reply = c.cmd(cmd)
            assert reply.code == 550, (cmd, reply)
            assert f'user "{r.user}"' in reply.text and "read_only = true" in reply.text
        assert c.cmd("NOOP").code == 200


def test_anonymous_is_read_only_and_off_by_default(natftp_server: Callable[..., Running],
                                                   server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        r = c.cmd("USER anonymous")
        assert r.code == 530 and "anonymous.enabled" in r.text
    a = natftp_server(args=["--anonymous"], users=False)
    (a.root / "pub.txt").write_text("public")
    with Ctl(a.host, a.port) as c:
        assert c.cmd("USER anonymous").code == 331
        assert c.cmd("PASS guest@example.org").code == 230
        assert c.cmd("SIZE pub.txt").text == "6"
        r = c.cmd("MKD x")
        assert r.code == 550 and "anonymous users are read-only" in r.text


def test_idle_timeout_closes_with_421(natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(config="[timeouts]\nidle = 1\n")
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        reply = c.read()
        assert reply.code == 421 and "timeouts.idle" in reply.text
        with pytest.raises(EOFError):
            c.read()


def test_passive_data_connection_from_another_address_is_refused(server: Running) -> None:
    from natftp.proto.addr import parse_227

    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        _, port = parse_227(c.cmd("PASV").text)
        thief = socket.socket()
        thief.bind(("127.0.0.2", 0))
        thief.connect(("127.0.0.1", port))
        thief.settimeout(5)
        good = socket.create_connection(("127.0.0.1", port))
        # in the clear the server accepts when the transfer asks for the connection:
        # the thief's, first in the queue, is closed then, the client's is used
        assert c.cmd("NLST").code in (125, 150)
        assert thief.recv(10) == b""  # closed by the server, no data
        thief.close()
        recv_all(good)
        assert c.read().code == 226
    assert "port stealing protection" in server.log


def test_a_fifo_in_the_tree_is_refused_without_blocking_the_server(server: Running) -> None:
    """A named pipe (put there by a local user) must not hang the event loop: opening it
    for reading or appending would block until another process opened its other end."""
    os.mkfifo(server.root / "pipe")
    with Ctl(server.host, server.port, timeout=5) as c:
        c.login(server.user, server.password)
        assert c.cmd("TYPE I").code == 200
        for verb in ("RETR", "APPE"):
            data = c.epsv_data()
            r = c.cmd(f"{verb} pipe")
            data.close()
            assert r.code == 550, (verb, r)
            assert "not a regular file" in r.text, (verb, r)
        assert c.cmd("NOOP").code == 200
    still_serves(server)
    assert (server.root / "pipe").is_fifo()
