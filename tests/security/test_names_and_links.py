"""Issue 21 items 2, 10, 11, 12: commands act on a link itself; the reserved upload names
are off limits and old leftovers are cleaned at start; names with control characters
get 553; REST takes only ASCII digits and a failed REST+STOR creates nothing.

Raw control connections (tests/support/ftpraw.py): ftplib refuses to send CR or LF.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from support.ftpraw import Ctl, recv_all
from support.servertools import Running


def nlst(c: Ctl, path: str = "") -> list[str]:
    d = c.epsv_data()
    assert c.cmd(f"NLST {path}".rstrip()).code in (125, 150)
    names = recv_all(d).decode("utf-8", "surrogateescape").split("\r\n")
    assert c.read().code == 226
    return [n for n in names if n]


def wait_log(r: Running, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in r.log:
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{r.log[-2000:]}"
        time.sleep(0.05)


# -- item 2: DELE and RMD act on the link, never its target ----------------------------

def test_dele_removes_the_link_and_rmd_refuses_it_targets_untouched(server: Running) -> None:
    root = server.root
    (root / "hello.txt").write_text("hello")
    os.symlink("hello.txt", root / "inner_link")
    (root / "realdir").mkdir()
    os.symlink("realdir", root / "dirlink")
    outside = root.parent / "outside.txt"
    outside.write_text("outside")
    os.symlink(outside, root / "out_link")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        r = c.cmd("DELE inner_link")
        assert r.code == 250, r
        r = c.cmd("RMD dirlink")
        assert r.code == 550 and "symbolic link" in r.text and "DELE" in r.text, r
        r = c.cmd("DELE dirlink")  # DELE removes a link to a directory too
        assert r.code == 250, r
        r = c.cmd("DELE out_link")  # a link leading out is an entry of the home: removable
        assert r.code == 250, r
        r = c.cmd("DELE realdir")
        assert r.code == 550 and "is a directory (use RMD)" in r.text, r
    assert (root / "hello.txt").read_text() == "hello"
    assert (root / "realdir").is_dir()
    assert outside.read_text() == "outside"
    assert not any(os.path.lexists(root / n) for n in ("inner_link", "dirlink", "out_link"))


def test_stor_replaces_a_link_and_appe_does_not_write_through_it(server: Running) -> None:
    root = server.root
    (root / "target.txt").write_bytes(b"target")
    os.symlink("target.txt", root / "link.txt")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("TYPE I").code == 200
        d = c.epsv_data()
        r = c.cmd("APPE link.txt")
        d.close()
        assert r.code == 550 and "symbolic link" in r.text, r
        d = c.epsv_data()
        assert c.cmd("STOR link.txt").code == 150
        d.sendall(b"new")
        d.close()
        assert c.read().code == 226
        assert c.cmd("SIZE link.txt").text == "3"
    assert (root / "target.txt").read_bytes() == b"target"
    assert not (root / "link.txt").is_symlink()
    assert (root / "link.txt").read_bytes() == b"new"


def test_links_inside_the_home_keep_working_for_reads(server: Running) -> None:
    root = server.root
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f.txt").write_bytes(b"deep")
    os.symlink("d/e", root / "rel")
    os.symlink(root / "d", root / "abs")
    os.symlink("../e/f.txt", root / "d" / "e" / "up")  # .. inside a target, staying in
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        for path in ("rel/f.txt", "abs/e/f.txt", "d/e/up", "rel/up"):
            assert c.cmd(f"SIZE {path}").text == "4", path
        assert c.cmd("CWD rel").code == 250
        assert "f.txt" in nlst(c)
        assert c.cmd("MDTM f.txt").code == 213
        assert c.cmd("CWD /abs/e").code == 250
        d = c.epsv_data()
        assert c.cmd("RETR up").code in (125, 150)
        assert recv_all(d) == b"deep"
        assert c.read().code == 226


# -- item 10: the reserved upload names -------------------------------------------------

def test_reserved_upload_names_can_be_neither_read_nor_created(server: Running) -> None:
    root = server.root
    (root / "sub").mkdir()
    (root / ".natftp-upload-x.part").write_bytes(b"someone's upload")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        for cmd in ("SIZE .natftp-upload-x.part", "MDTM .natftp-upload-x.part",
                    "DELE .natftp-upload-x.part", "RNFR .natftp-upload-x.part",
                    "CWD .natftp-upload-x.part", "MKD .natftp-upload-new.part",
                    "MKD sub/.natftp-upload-new.part", "MLST .natftp-upload-x.part"):
            r = c.cmd(cmd)
            assert r.code == 553 and "reserved for uploads" in r.text, (cmd, r)
        for cmd in ("RETR .natftp-upload-x.part", "STOR sub/.natftp-upload-y.part",
                    "APPE .natftp-upload-x.part"):
            d = c.epsv_data()
            r = c.cmd(cmd)
            d.close()
            assert r.code == 553, (cmd, r)
        (root / "plain.txt").write_bytes(b"p")
        assert c.cmd("RNFR plain.txt").code == 350
        r = c.cmd("RNTO .natftp-upload-z.part")
        assert r.code == 553, r
        assert nlst(c) == ["plain.txt", "sub"]
    assert sorted(p.name for p in root.rglob("*")) == [".natftp-upload-x.part",
                                                       "plain.txt", "sub"]


def test_old_upload_leftovers_are_removed_at_start_and_young_ones_kept(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    old = [root / ".natftp-upload-big.iso.part", root / "a" / "b" / ".natftp-upload-0f3e.part"]
    young = root / "a" / ".natftp-upload-new.bin.part"
    lookalike = root / ".natftp-upload-note.txt"  # not the pattern: not ours
    for p in [*old, young, lookalike]:
        p.write_bytes(b"x" * 1000)
    two_hours_ago = time.time() - 7200
    for p in [*old, lookalike]:
        os.utime(p, (two_hours_ago, two_hours_ago))
    r = natftp_server(config="[uploads]\npartial_max_age = 3600\n")
    wait_log(r, "removed 2 upload file(s) older than 3600 s (uploads.partial_max_age)")
    assert not any(p.exists() for p in old)
    assert young.exists() and lookalike.exists()


def test_a_kill_9_leftover_is_resumable_then_cleaned_when_old(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    r = natftp_server()
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        d = c.epsv_data()
        assert c.cmd("STOR big.bin").code == 150
        d.sendall(b"y" * 100_000)
        part = r.root / ".natftp-upload-big.bin.part"
        deadline = time.monotonic() + 30
        while not part.exists() or part.stat().st_size < 100_000:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r.stop(signal.SIGKILL)
        d.close()
    # the restarted server offers it for resuming...
    r2 = natftp_server(root=r.root)
    with Ctl(r2.host, r2.port) as c:
        c.login(r2.user, r2.password)
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("SIZE big.bin").text == "100000"
    r2.stop(signal.SIGKILL)
    # ...and removes it at the next start once it is older than partial_max_age
    day_ago = time.time() - 86400 - 60
    os.utime(part, (day_ago, day_ago))
    r3 = natftp_server(root=r.root)
    wait_log(r3, "removed 1 upload file(s)")
    assert not part.exists()


# -- item 11: control characters in names ---------------------------------------------

@pytest.mark.parametrize("line", [
    b"MKD c\r226 fake\r\n", b"MKD tab\there\r\n", b"STOR esc\x1b[31mred\r\n",
    b"CWD bell\x07\r\n", b"RNFR del\x7f\r\n", b"MKD c1\xc2\x85next-line\r\n",
    b"SIZE x\ry\r\n",
])
def test_names_with_control_characters_get_one_553_reply(server: Running,
                                                        line: bytes) -> None:
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        c.send_raw(line)
        r = c.read()
        assert r.code == 553 and len(r.lines) == 1, r
        assert "control character" in r.text
        assert c.cmd("NOOP").code == 200  # nothing else came: one reply, one line
        assert nlst(c) == []
    assert os.listdir(server.root) == []


def test_existing_names_with_control_characters_are_not_listed(server: Running) -> None:
    (server.root / "fake\r\n226 done").write_bytes(b"x")
    (server.root / "normal.txt").write_bytes(b"x")
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert nlst(c) == ["normal.txt"]
        d = c.epsv_data()
        assert c.cmd("LIST").code in (125, 150)
        listing = recv_all(d)
        assert c.read().code == 226
        assert listing.count(b"\r\n") == 1 and b"normal.txt" in listing


# -- item 12: REST ---------------------------------------------------------------------

def test_rest_takes_ascii_digits_only_and_the_session_goes_on(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        for arg in ("²", "١٢", "12a", "-5", "1" * 19, "1e3"):
            r = c.cmd(f"REST {arg}")
            assert r.code == 501 and "byte offset" in r.text, (arg, r)
        assert c.cmd("REST 7").code == 350
        assert c.cmd("NOOP").code == 200
    assert "internal server error" not in server.log and "Traceback" not in server.log


def test_rest_then_stor_of_a_missing_file_creates_nothing(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("TYPE I").code == 200  # a restart in TYPE A is refused anyway
        d = c.epsv_data()
        assert c.cmd("REST 999").code == 350
        r = c.cmd("STOR new.bin")
        d.close()
        assert r.code == 554 and "nothing to resume" in r.text, r
        (server.root / "small.bin").write_bytes(b"12345")
        d = c.epsv_data()
        assert c.cmd("REST 999").code == 350
        r = c.cmd("STOR small.bin")
        d.close()
        assert r.code == 554 and "beyond the end" in r.text, r
    assert sorted(os.listdir(server.root)) == ["small.bin"]
    assert (server.root / "small.bin").read_bytes() == b"12345"
