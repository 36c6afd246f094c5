"""Protocol corner cases real clients hit (issue 16), against ``natftp serve``.

TYPE A with ftplib, curl and raw sockets (line ends, SIZE and REST in wire octets);
CDUP/CWD .. at the root; MDTM on a directory; ABOR and STAT around transfers and
pipelined commands (every command exactly one final reply, in order); REIN and USER after
login; SITE CHMOD (with lftp) and SITE HELP.
"""

from __future__ import annotations

import ftplib
import io
import os
import random
import re
import socket
import ssl
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from test_server_clients import run, tool
from test_server_tls import ftplib_tls, tls_srv

from natftp.proto.replies import Reply
from natftp.server.data import ASCII_CHUNK
from natftp.server.handlers import ASCII_SIZE_MAX

from support.ftpraw import Ctl, recv_all
from support.servertools import Running

BIG = 16 << 20  # more than loopback's socket buffers hold: a RETR of it waits for us


def unix_to_wire(data: bytes) -> bytes:
    """What TYPE A must send for ``data``: a CR before each LF that has none."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def ftp(r: Running) -> ftplib.FTP:
    f = ftplib.FTP()
    f.connect(r.host, r.port, timeout=20)
    f.login(r.user, r.password)
    return f


def retr_raw(c: Ctl, cmd: str) -> tuple[list[Reply], bytes]:
    """A transfer command on a raw connection: its replies (1xx and final) and the data."""
    data = c.epsv_data()
    first = c.cmd(cmd)
    replies = [first]
    if first.code // 100 != 1:
        data.close()
        return replies, b""
    got = recv_all(data)
    replies.append(c.read())
    return replies, got


def drain(sock: socket.socket) -> None:
    """Read until the server closes (a reset counts: a port closed before accepting)."""
    try:
        recv_all(sock)
    except ConnectionResetError:
        sock.close()


def codes(c: Ctl, n: int) -> list[Reply]:
    return [c.read() for _ in range(n)]


# -- TYPE A ------------------------------------------------------------------------------

def test_ascii_download_sends_a_crlf_file_unchanged_ftplib_retrlines(server: Running) -> None:
    (server.root / "dos.txt").write_bytes(b"ab\r\ncd\r\n")
    (server.root / "unix.txt").write_bytes(b"one\ntwo\n\nthree")
    f = ftp(server)
    lines: list[str] = []
    f.retrlines("RETR dos.txt", lines.append)  # TYPE A, as ftplib does for text
    assert lines == ["ab", "cd"]  # not "ab\r": no CR CR LF on the wire
    lines.clear()
    f.retrlines("RETR unix.txt", lines.append)
    assert lines == ["one", "two", "", "three"]
    f.quit()
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("TYPE A").code == 200
        replies, got = retr_raw(c, "RETR dos.txt")
        assert got == b"ab\r\ncd\r\n"
        assert replies[-1].code == 226 and "(8 bytes)" in replies[-1].text


def test_ascii_download_across_read_chunks_and_lone_crs(server: Running) -> None:
    # the server reads TYPE A files ASCII_CHUNK bytes at a time: put a CR LF across that
    # boundary, a lone CR, CR CR LF and plain LFs around it
    data = (b"x" * (ASCII_CHUNK - 1) + b"\r\n" + b"unix\n" + b"lone\rcr\n" + b"crcr\r\r\n"
            + b"y" * (ASCII_CHUNK - 3) + b"\n\n" + b"z" * ASCII_CHUNK + b"\r")
    rng = random.Random(16)
    data += bytes(rng.choice(b"ab\r\n") for _ in range(3 * ASCII_CHUNK))
    (server.root / "mixed.txt").write_bytes(data)
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        c.cmd("TYPE A")
        replies, got = retr_raw(c, "RETR mixed.txt")
        assert replies[-1].code == 226
        assert got == unix_to_wire(data)
        assert c.cmd("SIZE mixed.txt").text == str(len(got))


def test_ascii_size_and_rest_count_octets_on_the_wire(server: Running) -> None:
    (server.root / "f.txt").write_bytes(b"ab\ncd\nef\n")  # 9 bytes, 12 octets in TYPE A
    (server.root / "dir").mkdir()
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("SIZE f.txt").text == "9"
        assert c.cmd("TYPE A").code == 200
        r = c.cmd("SIZE f.txt")
        assert (r.code, r.text) == (213, "12")
        r = c.cmd("SIZE dir")
        assert r.code == 550 and "not a regular file" in r.text
        assert c.cmd("SIZE missing.txt").code == 550
        for offset, want in ((4, b"cd\r\nef\r\n"), (3, b"\ncd\r\nef\r\n"), (11, b"\n"),
                             (12, b"")):
            r = c.cmd(f"REST {offset}")
            assert r.code == 350 and "TYPE A" in r.text
            replies, got = retr_raw(c, "RETR f.txt")
            assert got == want, offset
            assert replies[-1].code == 226
        # past the end, but within twice the size on disk: found out during the transfer
        assert c.cmd("REST 13").code == 350
        replies, got = retr_raw(c, "RETR f.txt")
        assert got == b""
        assert [x.code for x in replies] == [150, 554]
        assert "beyond the end" in replies[-1].text and "12 octets in TYPE A" in replies[-1].text
        # more than twice the size on disk: refused at once
        assert c.cmd("REST 19").code == 350
        data = c.epsv_data()
        r = c.cmd("RETR f.txt")
        data.close()
        assert r.code == 554 and "at most twice that in TYPE A" in r.text
        assert c.cmd("NOOP").code == 200


def test_ascii_size_of_a_very_large_file_is_refused_with_the_way_out(server: Running
                                                                     ) -> None:
    with open(server.root / "huge.log", "wb") as fh:
        fh.truncate(ASCII_SIZE_MAX + 1)  # sparse
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        r = c.cmd("SIZE huge.log")  # TYPE A is the default
        assert r.code == 550 and "TYPE A" in r.text and "TYPE I" in r.text
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("SIZE huge.log").text == str(ASCII_SIZE_MAX + 1)


def test_curl_use_ascii_download_and_size(server: Running, tmp_path: Path) -> None:
    (server.root / "f.txt").write_bytes(b"ab\ncd\nef\n")
    (server.root / "dos.txt").write_bytes(b"ab\r\ncd\r\n")
    curl = [tool("curl"), "-sS", "--max-time", "30", "--use-ascii"]
    out = tmp_path / "dos.txt"
    # curl turns the wire's CR LF into LF: a doubled CR would be left in the file
    run([*curl, "-o", str(out), server.url("dos.txt")])
    assert out.read_bytes() == b"ab\ncd\n"
    out = tmp_path / "f.txt"
    run([*curl, "-o", str(out), server.url("f.txt")])
    assert out.read_bytes() == b"ab\ncd\nef\n"
    # curl -I sends TYPE A and SIZE: the size in TYPE A is the octets a RETR sends
    p = run([*curl, "-I", server.url("f.txt")])
    assert "Content-Length: 12" in p.stdout, p.stdout


def test_ascii_upload_turns_crlf_into_lf_and_keeps_other_crs(server: Running) -> None:
    f = ftp(server)
    f.voidcmd("TYPE A")
    conn = f.transfercmd("STOR up.txt")
    conn.sendall(b"a\r\nb\r\r\nc\rd\ne\r")
    conn.close()
    assert f.voidresp().startswith("226")
    assert (server.root / "up.txt").read_bytes() == b"a\nb\r\nc\rd\ne\r"
    # a large upload: CR LF pairs wherever TCP and the server's reads cut them
    rng = random.Random(160)
    wire = bytes(rng.choice(b"ab\r\n") for _ in range(4 * ASCII_CHUNK + 7)) + b"\r\n\r"
    conn = f.transfercmd("STOR big.txt")
    view = memoryview(wire)
    for i in range(0, len(wire), 65537):  # odd-sized writes, one CR LF split on purpose
        conn.sendall(view[i:i + 65537])
    conn.close()
    assert f.voidresp().startswith("226")
    assert (server.root / "big.txt").read_bytes() == wire.replace(b"\r\n", b"\n")
    # the round trip: what was stored comes back as it was sent (CR LF lines)
    lines: list[str] = []
    f.storlines("STOR lines.txt", io.BytesIO(b"one\ntwo\n"))  # ftplib sends CR LF
    assert (server.root / "lines.txt").read_bytes() == b"one\ntwo\n"
    f.retrlines("RETR lines.txt", lines.append)
    assert lines == ["one", "two"]
    f.quit()


def test_curl_use_ascii_upload(server: Running, tmp_path: Path) -> None:
    # curl sends each LF of the file as CR LF (and a lone CR as it is)
    src = tmp_path / "src.txt"
    src.write_bytes(b"unix\nline\nlone\rcr\n")
    run([tool("curl"), "-sS", "--max-time", "30", "--use-ascii", "-T", str(src),
         server.url("src.txt")])
    assert (server.root / "src.txt").read_bytes() == b"unix\nline\nlone\rcr\n"


def test_rest_stor_in_ascii_is_refused_with_why(server: Running) -> None:
    (server.root / "keep.txt").write_bytes(b"keep\n")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("REST 3").code == 350
        data = c.epsv_data()
        r = c.cmd("STOR keep.txt")
        data.close()
        assert r.code == 554 and "TYPE A" in r.text and "TYPE I" in r.text
        assert (server.root / "keep.txt").read_bytes() == b"keep\n"
        # the offset was used up: a plain STOR goes on normally
        data = c.epsv_data()
        assert c.cmd("STOR keep.txt").code == 150
        data.sendall(b"new\r\n")
        data.close()
        assert c.read().code == 226
        assert (server.root / "keep.txt").read_bytes() == b"new\n"
    assert "REST 3 in TYPE A cannot be resumed" in server.log


# -- directories and MDTM --------------------------------------------------------------

def test_cdup_and_cwd_dotdot_at_the_root_stay_at_the_root(server: Running) -> None:
    (server.root / "a" / "b").mkdir(parents=True)
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        for cmd in ("CDUP", "XCUP", "CWD ..", "CWD ../..", "CWD /..", "XCWD .."):
            r = c.cmd(cmd)
            assert r.code == 250, (cmd, r)
            assert c.cmd("PWD").text.startswith('"/"'), cmd
        assert c.cmd("CWD a/b").code == 250
        assert c.cmd("CWD ../../../..").code == 250  # steps up stop at the top
        assert c.cmd("PWD").text.startswith('"/"')
        assert c.cmd("CWD a/b").code == 250
        assert c.cmd("CDUP").code == 250
        assert c.cmd("PWD").text.startswith('"/a"')
        # a path that names something above the home is still refused, and logged
        r = c.cmd("CWD ../../etc")
        assert r.code == 550 and "above the home directory" in r.text
    assert server.log.count("above the home directory") == 1
    f = ftp(server)
    f.cwd("..")  # ftplib's cwd("..") sends CDUP and raises on anything but 2xx
    assert f.pwd() == "/"
    f.quit()


def test_mdtm_on_a_directory_is_refused(server: Running) -> None:
    (server.root / "d").mkdir()
    (server.root / "f").write_bytes(b"x")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        r = c.cmd("MDTM d")
        assert r.code == 550 and "not a regular file" in r.text
        assert c.cmd("MDTM /").code == 550
        assert c.cmd("MDTM f").code == 213


# -- ABOR, STAT, pipelining ----------------------------------------------------------------

def test_abor_right_after_login_and_after_a_transfer_says_no_transfer(server: Running
                                                                     ) -> None:
    (server.root / "small.bin").write_bytes(b"s" * 100)
    for i in range(60):  # the 230 is written by the login's task, just before it ends
        with Ctl(server.host, server.port) as c:
            c.login(server.user, server.password)
            r = c.cmd("ABOR")
            assert r.code == 225 and "No transfer to abort" in r.text, (i, r)
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        for i in range(60):  # TYPE A and I: the 226 written by a transfer task
            c.cmd("TYPE A" if i % 2 else "TYPE I")
            replies, got = retr_raw(c, "RETR small.bin")
            assert got == b"s" * 100 and replies[-1].code == 226
            r = c.cmd("ABOR")
            assert r.code == 225 and "No transfer to abort" in r.text, (i, r)


def test_pass_and_abor_in_one_segment_get_one_reply_each(server: Running) -> None:
    for _ in range(20):
        with Ctl(server.host, server.port) as c:
            c.send_raw(f"USER {server.user}\r\nPASS {server.password}\r\nABOR\r\n".encode())
            got = [r.code for r in codes(c, 3)]
            assert got == [331, 230, 225], got
            assert c.cmd("PWD").code == 257  # the login stood


def test_pipelined_commands_get_exactly_one_reply_each_in_order(server: Running) -> None:
    (server.root / "f.txt").write_bytes(b"ab\ncd\n")
    (server.root / "d").mkdir()
    script = [
        ("USER " + server.user, 331), ("PASS " + server.password, 230), ("TYPE I", 200),
        ("SIZE f.txt", 213), ("TYPE A", 200), ("SIZE f.txt", 213), ("MDTM d", 550),
        ("CDUP", 250), ("PWD", 257), ("NOOP", 200), ("ABOR", 225), ("STAT", 211),
        ("SITE HELP", 214), ("FOO", 500), ("SITE CHMOD 600 f.txt", 200), ("REIN", 220),
        ("PWD", 530), ("ABOR", 530), ("USER " + server.user, 331),
        ("PASS " + server.password, 230), ("STAT d", 213), ("PWD", 257), ("QUIT", 221),
    ]
    with Ctl(server.host, server.port) as c:
        c.send_raw(b"".join(cmd.encode() + b"\r\n" for cmd, _ in script))
        got = []
        while True:
            try:
                got.append(c.read())
            except EOFError:
                break
    assert [r.code for r in got] == [code for _, code in script], got
    assert (got[3].text, got[5].text) == ("6", "8")  # SIZE in TYPE I, then in TYPE A
    assert stat.S_IMODE((server.root / "f.txt").stat().st_mode) == 0o600


def test_retr_and_abor_in_one_segment_abort_that_transfer(server: Running) -> None:
    (server.root / "big.bin").write_bytes(os.urandom(BIG))
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        for cmd in ("TYPE I", "TYPE A"):
            c.cmd(cmd)
            data = c.epsv_data()
            c.send_raw(b"RETR big.bin\r\nABOR\r\n")
            replies = [c.read()]
            while replies[-1].code != 226:
                replies.append(c.read())
            got = [r.code for r in replies]
            # binary: the file started at once and filled the socket (150 first)
            assert got in ([150, 426, 226], [426, 226]), (cmd, replies)
            assert "aborted by ABOR" in replies[-2].text
            drain(data)  # closed by the server
            assert c.cmd("NOOP").code == 200  # nothing else was left to read
            r = c.cmd("ABOR")
            assert r.code == 225


def test_two_abors_during_a_transfer_get_426_226_then_225(server: Running) -> None:
    (server.root / "big.bin").write_bytes(os.urandom(BIG))
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        c.cmd("TYPE I")
        data = c.epsv_data()
        assert c.cmd("RETR big.bin").code == 150
        c.send_raw(b"ABOR\r\nABOR\r\n")
        got = [r.code for r in codes(c, 3)]
        assert got == [426, 226, 225], got
        data.close()
        assert c.cmd("NOOP").code == 200


def test_stat_during_a_transfer_is_answered_at_once(server: Running) -> None:
    (server.root / "big.bin").write_bytes(os.urandom(BIG))
    with Ctl(server.host, server.port, timeout=20) as c:
        c.login(server.user, server.password)
        c.cmd("TYPE I")
        data = c.epsv_data()
        assert c.cmd("RETR big.bin").code == 150
        # we have not read a byte: the transfer cannot have ended, so this reply is the
        # status in the middle of it
        r = c.cmd("STAT")
        assert r.code == 211
        assert "transfer in progress: RETR /big.bin" in r.text, r
        m = re.search(r"(\d+) bytes so far", r.text)
        assert m and 0 < int(m.group(1)) < BIG
        # STAT with a path is a listing: it waits for the transfer, in order
        c.send_raw(b"STAT /\r\nNOOP\r\n")
        got = recv_all(data)
        assert len(got) == BIG
        assert [x.code for x in codes(c, 3)] == [226, 213, 200]


# -- REIN and USER after login -------------------------------------------------------------

def test_rein_waits_for_the_transfer_then_logs_out_and_resets(server: Running) -> None:
    (server.root / "big.bin").write_bytes(os.urandom(BIG))
    (server.root / "sub").mkdir()
    with Ctl(server.host, server.port, timeout=20) as c:
        c.login(server.user, server.password)
        for cmd in ("TYPE I", "CWD sub", "REST 0"):
            assert c.cmd(cmd).code in (200, 250, 350)
        c.cmd("CDUP")
        data = c.epsv_data()
        assert c.cmd("RETR big.bin").code == 150
        c.send_raw(b"REIN\r\n")
        assert len(recv_all(data)) == BIG  # the transfer completes under the old login
        assert c.read().code == 226
        r = c.read()
        assert r.code == 220 and "send USER" in r.text
        assert c.cmd("PWD").code == 530
        st = c.cmd("STAT").text
        assert "Not logged in" in st and "TYPE: ASCII" in st
        c.login(server.user, server.password)
        assert c.cmd("PWD").text.startswith('"/"')
    assert f"{server.user} logged out (REIN)" in server.log


def test_user_after_login_switches_account(natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(args=["--user", "bob:bob pw", "--anonymous"])
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("USER bob").code == 331
        assert c.cmd("PWD").code == 530  # the old login ended with USER
        rep = c.cmd("PASS bob pw")
        assert rep.code == 230 and "bob" in rep.text
        assert "TYPE: BINARY" in c.cmd("STAT").text  # transfer parameters stay
        # a wrong password after a switch leaves the session logged out
        assert c.cmd("USER bob").code == 331
        assert c.cmd("PASS wrong").code == 530
        assert c.cmd("PWD").code == 530
        assert c.cmd("USER anonymous").code == 331
        assert c.cmd("PASS me@example.org").code == 230
        assert c.cmd("MKD x").code == 550  # anonymous stays read-only
    log = r.log
    assert f"{r.user} logged out (USER bob sent)" in log
    assert "bob logged in" in log and "anonymous logged in" in log


# -- SITE --------------------------------------------------------------------------------

def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_lftp_chmod_uses_site_chmod(server: Running) -> None:
    (server.root / "f.txt").write_bytes(b"x")
    (server.root / "d").mkdir()
    (server.root / "d" / "g.txt").write_bytes(b"y")
    os.chmod(server.root / "f.txt", 0o644)
    run([tool("lftp"), "-c", "set cmd:fail-exit yes; set ftp:ssl-allow no; "
         "set ftp:use-site-chmod yes; set net:max-retries 1; "
         f"open -u {server.user},'{server.password}' -p {server.port} {server.host}; "
         "chmod 600 f.txt; chmod 750 d; chmod 604 d/g.txt"])
    assert mode(server.root / "f.txt") == 0o600
    assert mode(server.root / "d") == 0o750
    assert mode(server.root / "d" / "g.txt") == 0o604
    assert "SITE CHMOD 600 /f.txt" in server.log


def test_lftp_chmod_refused_on_a_read_only_server_names_the_setting(
        natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(args=["--read-only"])
    (r.root / "f.txt").write_bytes(b"x")
    os.chmod(r.root / "f.txt", 0o644)
    p = subprocess.run([tool("lftp"), "-c", "set cmd:fail-exit yes; set ftp:ssl-allow no; "
                        "set net:max-retries 1; "
                        f"open -u {r.user},'{r.password}' -p {r.port} {r.host}; "
                        "chmod 600 f.txt"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "read_only = true" in p.stderr, p.stderr
    assert mode(r.root / "f.txt") == 0o644


def test_site_chmod_refusals_say_why(server: Running) -> None:
    root = server.root
    (root / "f.txt").write_bytes(b"x")
    os.chmod(root / "f.txt", 0o644)
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"s")
    os.chmod(outside / "secret.txt", 0o600)
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "outdir")
    os.symlink("f.txt", root / "inside-link.txt")
    with Ctl(server.host, server.port) as c:
        assert c.cmd("SITE CHMOD 600 f.txt").code == 530
        r = c.cmd("SITE HELP")
        assert r.code == 214 and "SITE CHMOD <mode> <path>" in r.text
        c.login(server.user, server.password)
        for cmd, code, words in [
            ("SITE", 501, "SITE HELP lists them"),
            ("SITE CHMOD", 501, "needs an argument"),
            ("SITE CHMOD 600", 501, "an octal mode and a path"),
            ("SITE CHMOD 689 f.txt", 501, "not an octal mode"),
            ("SITE CHMOD rwx f.txt", 501, "not an octal mode"),
            ("SITE CHMOD 12345 f.txt", 501, "not an octal mode"),
            ("SITE CHMOD 4755 f.txt", 550, "setuid, setgid and sticky"),
            ("SITE CHMOD 1777 f.txt", 550, "setuid, setgid and sticky"),
            ("SITE CHMOD 600 missing.txt", 550, "no such file"),
            ("SITE CHMOD 600 nodir/f.txt", 550, "no such"),
            ("SITE CHMOD 600 link.txt", 550, "symbolic link"),
            ("SITE CHMOD 600 inside-link.txt", 550, "symbolic link"),
            ("SITE CHMOD 777 outdir/secret.txt", 550, "outside the home"),
            ("SITE CHMOD 777 ../outside/secret.txt", 550, "above the home"),
            ("SITE CHMOD 700 /", 550, "home directory"),
            ("SITE UMASK 022", 502, "not implemented"),
            ("SITE FROBNICATE x", 500, "unknown SITE command"),
        ]:
            r = c.cmd(cmd)
            assert r.code == code and words in r.text, (cmd, r)
        r = c.cmd("SITE chmod 0640 f.txt")
        assert r.code == 200 and "640" in r.text
        assert c.cmd("SITE HELP CHMOD").code == 214
    assert mode(root / "f.txt") == 0o640
    assert mode(outside / "secret.txt") == 0o600  # never followed, never changed


def test_site_chmod_permission_comes_from_the_user_and_names_it(
        natftp_server: Callable[..., Running]) -> None:
    from argon2 import PasswordHasher

    h = PasswordHasher().hash("pw")
    r = natftp_server(users=False, args=["--anonymous"], config=(
        f'[[users]]\nname = "ro"\npassword_hash = "{h}"\n'
        "permissions = { write = false }\n"
        f'[[users]]\nname = "nochmod"\npassword_hash = "{h}"\n'
        "permissions = { chmod = false }\n"
        f'[[users]]\nname = "chmodonly"\npassword_hash = "{h}"\n'
        "permissions = { write = false, chmod = true }\n"))
    (r.root / "f.txt").write_bytes(b"x")
    os.chmod(r.root / "f.txt", 0o644)
    with Ctl(r.host, r.port) as c:
        for user, code, why in [
            ("ro", 550, 'Permission changes (SITE CHMOD) are disabled for user "ro" '
                        "(permissions.chmod = false)"),
            ("nochmod", 550, "(permissions.chmod = false)"),
            ("anonymous", 550, "anonymous users are read-only: permissions.chmod is "
                               "always off for them"),
            ("chmodonly", 200, "permissions changed"),
        ]:
            assert c.cmd(f"USER {user}").code == 331
            assert c.cmd("PASS pw").code == 230
            rep = c.cmd("SITE CHMOD 600 f.txt")
            assert rep.code == code and why in rep.text, (user, rep)
            if code != 200:
                rep = c.cmd("SITE HELP")
                assert "not for this login" in rep.text and "chmod" in rep.text
    assert mode(r.root / "f.txt") == 0o600


def test_help_lists_site_and_rein_and_they_are_no_longer_502(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        r = c.cmd("HELP")
        assert r.code == 214 and "SITE" in r.text and "REIN" in r.text
        assert c.cmd("HELP SITE").code == 214
        assert c.cmd("REIN").code == 220  # also before login


def test_data_connection_closed_after_abor_before_the_transfer_started(server: Running
                                                                       ) -> None:
    """ABOR in the same read as LIST: the passive port it would have used is closed."""
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        r = c.cmd("EPSV")
        port = int(re.findall(r"\|(\d+)\|", r.text)[0])
        c.send_raw(b"LIST\r\nABOR\r\n")
        got = [x.code for x in codes(c, 2)]
        assert got == [426, 226], got
        r = c.cmd("LIST")
        assert r.code == 425  # no data connection set up any more
    assert f"port {port}" not in server.log  # no timeout waiting for it either


def test_rein_keeps_tls_on_the_control_connection(natftp_server: Callable[..., Running],
                                                  tmp_path: Path) -> None:
    r = tls_srv(natftp_server, tmp_path)
    (r.root / "f.bin").write_bytes(b"data" * 1000)
    f = ftplib_tls(r, tmp_path)
    f.prot_p()
    assert f.sendcmd("REIN").startswith("220")
    assert isinstance(f.sock, ssl.SSLSocket)
    f.login(r.user, r.password)  # over TLS still: no second AUTH TLS
    out = io.BytesIO()
    f.retrbinary("RETR f.bin", out.write)  # PROT P stayed
    assert out.getvalue() == b"data" * 1000
    f.quit()
    assert r.log.count("TLS established") == 1  # one handshake: TLS never left
