"""Issue 14, the client's part: `natftp` never loses a user's files, never shows a
password, never ends in a traceback, and a TLS failure says how to fix it.

Every test runs the real `natftp` command against a real server on loopback: natftp
serve (servertools), pyftpdlib (clientpeers) or vsftpd (peers)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from support import servertools
from support.clientpeers import NATFTP, Server, free_port, natftp, sha256, tree_digest
from support.servertools import Running

#: `natftp serve` on 127.0.0.1 (user alice), a factory fixture killed by PID at the end
serve = servertools.natftp_server

SECRET = "s3cret pass"  # servertools' password for alice


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 60) -> None:
    """Poll an observable condition (bounded), for synchronisation without sleeps."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- item 1: a download never destroys a local file --------------------------------------

def test_get_of_a_directory_url_without_its_slash_leaves_the_local_file_alone(
        serve: Callable[..., Running], tmp_path: Path) -> None:
    s = serve()
    (s.root / "docs").mkdir()
    (tmp_path / "local").mkdir()
    keep = tmp_path / "local" / "keep.txt"
    keep.write_text("precious\n")
    r = natftp("get", s.url("docs"), str(keep))
    assert r.returncode == 5, r.stderr
    assert keep.read_text() == "precious\n"
    assert [p.name for p in keep.parent.iterdir()] == ["keep.txt"]
    r = natftp("get", s.url("docs/"), str(keep))
    assert r.returncode == 2 and "names a directory" in r.stderr
    assert keep.read_text() == "precious\n"


def test_a_download_killed_midway_leaves_the_old_file_and_get_c_resumes(
        ftpd: Callable[..., Server], tmp_path: Path) -> None:
    """A fresh download goes to a hidden partial file and takes the destination's name
    only when complete: SIGKILL of the client mid-transfer leaves the old file exactly as
    it was; `get -c` continues the partial file (REST) and then replaces the old one."""
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(2_000_000)
    (root / "big.bin").write_bytes(data)
    slow = ftpd("--rate", "250000", root=root)
    dest = tmp_path / "big.bin"
    dest.write_bytes(b"the old version\n")
    dest.chmod(0o640)
    part = tmp_path / ".big.bin.natftp-part"
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.Popen([str(NATFTP), "get", slow.url + "big.bin", str(dest)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for("bytes in the partial file (or a changed destination)",
                 lambda: (part.exists() and part.stat().st_size > 100_000)
                 or dest.read_bytes() != b"the old version\n" or proc.poll() is not None)
    finally:
        proc.kill()
        proc.wait(10)
    assert dest.read_bytes() == b"the old version\n"
    got = part.stat().st_size
    assert 0 < got < len(data) and part.read_bytes() == data[:got]

    fast = ftpd(root=root)
    r = natftp("get", "-c", "-v", fast.url + "big.bin", str(dest), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"> REST {got}" in r.stderr
    assert dest.read_bytes() == data and not part.exists()
    assert dest.stat().st_mode & 0o777 == 0o640  # the replaced file's mode is kept


def test_a_failed_download_keeps_the_destination_and_says_where_the_bytes_are(
        ftpd: Callable[..., Server], tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(2_000_000))
    slow = ftpd("--rate", "250000", root=root)
    (tmp_path / "dl").mkdir()
    dest = tmp_path / "dl" / "big.bin"
    dest.write_text("keep me\n")
    part = tmp_path / "dl" / ".big.bin.natftp-part"
    proc = subprocess.Popen([str(NATFTP), "get", "--timeout", "10", slow.url + "big.bin",
                             str(dest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HOME": str(tmp_path)})
    wait_for("bytes in the partial file", lambda: part.exists() and part.stat().st_size > 0)
    slow.kill()  # the server dies mid-transfer
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (3, 6), err
    assert dest.read_text() == "keep me\n"
    assert str(part) in err.decode() and "get -c" in err.decode()
    other = ftpd()  # a mirror of the directory does not carry the partial file along
    r = natftp("mirror", str(tmp_path / "dl"), other.url + "copy")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (other.root / "copy").iterdir()) == ["big.bin"]


def test_get_continue_appends_only_after_the_server_accepted_rest_and_retr(
        serve: Callable[..., Running], tmp_path: Path) -> None:
    s = serve()
    partial = tmp_path / "gone.bin"
    partial.write_bytes(b"half a file")
    r = natftp("get", "-c", "-v", s.url("gone.bin"), str(partial))
    assert r.returncode == 5, r.stderr
    assert partial.read_bytes() == b"half a file"
    data = os.urandom(100_000)
    (s.root / "r.bin").write_bytes(data)
    (tmp_path / "r.bin").write_bytes(data[:40_000])
    r = natftp("get", "-c", "-v", s.url("r.bin"), str(tmp_path / "r.bin"))
    assert r.returncode == 0 and "> REST 40000" in r.stderr, r.stderr
    assert (tmp_path / "r.bin").read_bytes() == data
    r = natftp("get", "-c", s.url("r.bin"), str(tmp_path / "new.bin"))
    assert r.returncode == 0 and "nothing to resume" in r.stderr
    assert (tmp_path / "new.bin").read_bytes() == data


def test_get_to_stdout_into_head_ends_quietly(serve: Callable[..., Running]) -> None:
    """`natftp get URL - | head`: the reader leaves, the download ends without a word
    (141, as for a process that SIGPIPE ended), not with a Broken pipe message."""
    s = serve()
    (s.root / "big.bin").write_bytes(os.urandom(4_000_000))
    r = subprocess.run(["bash", "-c", f"set -o pipefail; '{NATFTP}' get '{s.url('big.bin')}'"
                        " - | head -c 1000 | wc -c; echo status ${PIPESTATUS[0]}"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["1000", "status", "141"], (r.stdout, r.stderr)
    assert r.stderr == ""


# -- item 2: mirror --delete never deletes because a source was not seen -----------------

def test_mirror_delete_from_a_mistyped_remote_directory_deletes_nothing(
        serve: Callable[..., Running], tmp_path: Path) -> None:
    s = serve()
    (s.root / "dir").mkdir()
    (s.root / "dir" / "a.txt").write_text("a\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a\n")
    (tree / "sub" / "b.txt").write_text("b\n")
    before = tree_digest(tree)
    for wrong in ("dirx", "dir/a.txt"):
        r = natftp("mirror", "--delete", s.url(wrong), str(tree))
        assert r.returncode == 5, r.stderr
        assert "nothing was changed" in r.stderr and "done" not in r.stderr
        assert tree_digest(tree) == before


def test_mirror_delete_up_from_a_missing_local_directory_deletes_nothing(
        serve: Callable[..., Running], tmp_path: Path) -> None:
    s = serve()
    (s.root / "site").mkdir()
    (s.root / "site" / "index.html").write_text("<p>\n")
    r = natftp("mirror", "--delete", str(tmp_path / "sitex"), s.url("site"))
    assert r.returncode == 5 and "nothing was changed" in r.stderr, r.stderr
    assert (s.root / "site" / "index.html").exists()


def test_mirror_delete_up_with_an_unreadable_local_directory_deletes_nothing(
        serve: Callable[..., Running], tmp_path: Path) -> None:
    """A local directory the client cannot read (os.walk skips it silently) must not
    make its remote copy "not in source". The client runs as root without the
    capabilities that let root read any directory (setpriv)."""
    s = serve()
    remote = s.root / "site" / "private"
    remote.mkdir(parents=True)
    (remote / "keep.txt").write_text("remote copy\n")
    local = tmp_path / "site"
    (local / "private").mkdir(parents=True)
    (local / "private" / "keep.txt").write_text("local\n")
    (local / "private").chmod(0)
    try:
        r = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                            str(NATFTP), "mirror", "--delete", str(local), s.url("site")],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "HOME": str(tmp_path)})
    finally:
        (local / "private").chmod(0o755)
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert "Permission denied" in r.stderr
    assert (remote / "keep.txt").read_text() == "remote copy\n"


def test_mirror_delete_from_vsftpd_with_an_unreadable_directory_deletes_nothing(
        vsftpd_peer: object, tmp_path: Path) -> None:
    """vsftpd answers LIST of a directory it may not open with 226 and the directory's
    own line (as ls -ld): a listing that failed half-way, which must not pass for the
    directory's content."""
    from support.peers import Peer
    assert isinstance(vsftpd_peer, Peer)
    locked = vsftpd_peer.root / "locked"
    locked.mkdir()
    (locked / "f.txt").write_text("remote\n")
    os.chown(locked, 0, 0)
    locked.chmod(0o700)  # vsftpd's session runs as natftptest: it cannot open this
    (vsftpd_peer.root / "open.txt").write_text("open\n")
    tree = tmp_path / "copy"
    (tree / "locked").mkdir(parents=True)
    (tree / "locked" / "f.txt").write_text("my copy\n")
    (tree / "open.txt").write_text("open\n")
    before = tree_digest(tree)
    r = natftp("mirror", "--delete", vsftpd_peer.url, str(tree))
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert "cannot list locked" in r.stderr
    assert tree_digest(tree) == before
    r = natftp("ls", vsftpd_peer.url + "locked")
    assert r.returncode == 5 and "cannot list" in r.stderr


# -- item 3 (client side): -c says when there is nothing to resume -----------------------

def test_put_continue_with_nothing_to_resume_says_so(serve: Callable[..., Running],
                                                     ftpd: Callable[..., Server],
                                                     tmp_path: Path) -> None:
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(200_000))
    s = serve()
    r = natftp("put", "-c", str(src), s.url("up.bin"))
    assert r.returncode == 0, r.stderr
    assert "nothing to resume at up.bin" in r.stderr and "whole file" in r.stderr
    assert sha256(s.root / "up.bin") == sha256(src)
    p = ftpd()
    r = natftp("put", "-c", str(src), p.url + "up.bin")
    assert r.returncode == 0 and "nothing to resume" in r.stderr, r.stderr
    r = natftp("put", "-c", "-v", str(src), p.url + "up.bin")  # complete: nothing sent
    assert r.returncode == 0 and "nothing to resume" not in r.stderr
    assert "> STOR" not in r.stderr


# -- item 5: no password in any message ------------------------------------------------

def test_no_message_shows_the_password(serve: Callable[..., Running],
                                       tmp_path: Path) -> None:
    s = serve()
    (s.root / "d").mkdir()
    url = s.url()
    cases = [
        ["get", url], ["get", url + "d/"], ["get", url + "missing.txt", str(tmp_path / "m")],
        ["ls", url.replace(f":{s.port}/", ":99999/")], ["ls", url, url],
        ["ls", "-v", url], ["ls", "--bogus", url], ["put", "-c", "-v", __file__, url],
        ["mirror", url + "nope", str(tmp_path / "t")], ["ls", url + "%0d%0aDELE"],
        ["ls", "--fingerprint", "00:11", url.replace("ftp://", "ftpes://")],
        ["doctor", "-v", url], ["doctor", url.replace(f":{s.port}/", ":0/")],
    ]
    for args in cases:
        r = natftp(*args, cwd=tmp_path)
        out = r.stdout + r.stderr
        for shown in (SECRET, SECRET.replace(" ", "%20")):
            assert shown not in out, (args, out)
        assert "Traceback" not in out, (args, out)
    r = natftp("ls", "-v", url)
    assert "> PASS ****" in r.stderr
    r = natftp("get", url + "d/")
    assert f"ftp://alice:****@127.0.0.1:{s.port}/d/ names a directory" in r.stderr


# -- item 7: every bad input is one line and exit 2 ------------------------------------

BAD_INPUTS = [
    ["ls", "ftp://[::1:2122/"],
    ["doctor", "ftp://[::1:2122/"],
    ["ls", "--fingerprint", "00:11", "ftpes://u:p@127.0.0.1:{port}/"],
    ["ls", "--fingerprint", "zz", "ftp://127.0.0.1:{port}/"],
    ["ls", "--cacert", "/nonexistent.pem", "ftpes://127.0.0.1:{port}/"],
    ["ls", "--cacert", "/etc/hostname", "ftps://127.0.0.1:{port}/"],
    ["ls", "--active", "--active-address", "my.router", "ftp://127.0.0.1:{port}/"],
    ["ls", "ftp://127.0.0.1:{port}/a%0d%0aDELE%20x"],
    ["ls", "ftp://u:p@127.0.0.1:99999/"],
    ["ls", "sftp://127.0.0.1/"],
    ["ls", "--timeout", "soon", "ftp://127.0.0.1:{port}/"],
    ["ls", "ftp://127.0.0.1:{port}/", "extra"],
    ["get", "ftp://127.0.0.1:{port}/"],
    ["mirror", "a", "b"],
    ["rm", "ftp://127.0.0.1:{port}/"],
    ["doctor", "--timeout", "0", "ftp://127.0.0.1:{port}/"],
    ["doctor", "ftp://127.0.0.1:0/"],
    ["gateway", "--listen", "localhost:2150", "--upstream", "127.0.0.1:{port}"],
    ["gateway", "--listen", "127.0.0.1:0", "--upstream", "2121"],
    ["gateway", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:{port}", "--tls-cert",
     "/nonexistent.pem"],
    ["gateway", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:{port}", "--tls-cert",
     "/etc/hostname"],
    ["gateway", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:{port}",
     "--max-sessions", "0"],
    ["nosuchcommand"],
]


@pytest.mark.parametrize("args", BAD_INPUTS, ids=lambda a: " ".join(a))
def test_a_bad_input_is_one_line_and_exit_2(args: list[str], tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: no input here may reach a server
    r = natftp(*[a.format(port=port) for a in args], cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert one_line(r.stderr).startswith("natftp")


# Hostile arguments; none names a host to look up (no DNS query leaves this machine):
# every URL that parses points at 127.0.0.1 or ::1, on a port where nothing listens.
HOSTILE = ["", "-", "--", "%", "%zz", "ftp://", "ftp://:@/", "ftp://[", "ftp://[::1]:x/",
           "ftps://h:-1/", "ftp://\x01/", "ftp://127.0.0.1:{port}/\x1b[31m", "é/ü", "x" * 5000,
           "-v", "ftp://127.0.0.1:{port}/%00", "ftpes://[::1]:{port}/..%2f..", "@@@", "::::",
           "ftp://u:p@127.0.0.1:{port}/%0a", "ftps://127.0.0.1:{port}/\u202e"]


def test_fuzzed_arguments_never_end_in_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each client command with each hostile token in each argument position: one line
    of error at most, a documented exit status, never a traceback. In-process (the
    same `main()` as the command), so that any exception that escapes fails the test."""
    from natftp.cli import main

    port = free_port()
    url = f"ftp://u:p@127.0.0.1:{port}/"
    shapes = [["ls", "{t}"], ["get", "{t}", "out"], ["get", url + "f", "{t}"],
              ["put", "{t}", url], ["mirror", "{t}", "local"], ["mv", url + "a", "{t}"],
              ["ls", "--fingerprint", "{t}", url.replace("ftp", "ftps")],
              ["ls", "--active-address", "{t}", url]]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for shape in shapes:
        for token in HOSTILE:
            args = [a.replace("{t}", token.format(port=port)) for a in shape]
            monkeypatch.setattr(sys, "argv", ["natftp", *args])
            with pytest.raises(SystemExit) as ended:
                main()
            err = capsys.readouterr().err
            assert ended.value.code in (2, 3, 5), (args, ended.value.code, err)
            said = [x for x in err.splitlines() if not x.startswith(("* ", "> ", "< "))]
            assert len(said) == 1 and said[0].startswith("natftp"), (args, err)  # -v: +trace


# -- item 8: a TLS failure says how to fix it ----------------------------------------------

def test_tls_failures_name_their_fix(serve: Callable[..., Running], tmp_path: Path) -> None:
    s = serve(args=["--tls", "--state-dir", str(tmp_path / "state")])
    printed = next(line.rsplit(" ", 1)[1] for line in s.log.splitlines()
                   if "fingerprint" in line)
    url = s.url().replace("ftp://", "ftpes://")
    r = natftp("ls", url)
    assert r.returncode == 8, r.stderr
    line = one_line(r.stderr)
    assert "self-signed" in line and f"--fingerprint SHA256:{printed}" in line
    assert "--cacert FILE" in line and "-k" in line
    r = natftp("ls", "--fingerprint", f"SHA256:{printed}", url)
    assert r.returncode == 0, r.stderr
    r = natftp("ls", url.replace("ftpes://", "ftps://"))
    assert r.returncode == 8
    assert f"use ftpes://127.0.0.1:{s.port}/" in one_line(r.stderr)
    port = free_port()
    r = natftp("ls", f"ftp://127.0.0.1:{port}/")
    assert r.returncode == 3 and f"nothing listens on 127.0.0.1:{port}" in r.stderr


# -- item 12: mv into a directory keeps the name ------------------------------------------

def test_mv_into_a_directory_keeps_the_name(serve: Callable[..., Running]) -> None:
    s = serve()
    (s.root / "newdir").mkdir()
    (s.root / "a.txt").write_text("a\n")
    (s.root / "b.txt").write_text("b\n")
    r = natftp("mv", s.url("a.txt"), "newdir/")
    assert r.returncode == 0, r.stderr
    assert (s.root / "newdir" / "a.txt").read_text() == "a\n"
    r = natftp("mv", s.url("b.txt"), "newdir")  # an existing directory, as mv(1)
    assert r.returncode == 0, r.stderr
    assert (s.root / "newdir" / "b.txt").read_text() == "b\n"
    r = natftp("mv", s.url("newdir/b.txt"), "c.txt")  # a plain rename stays one
    assert r.returncode == 0 and (s.root / "c.txt").read_text() == "b\n"


def test_get_to_a_device_or_a_pipe_writes_it_and_never_replaces_it(
        serve: Callable[..., Running], tmp_path: Path) -> None:
    """A download goes to a partial file renamed into place, except when the destination
    is not a regular file: /dev/null stays the device, a FIFO gets the bytes."""
    s = serve()
    (s.root / "f.bin").write_bytes(b"x" * 100_000)
    r = natftp("get", s.url("f.bin"), "/dev/null")
    assert r.returncode == 0, r.stderr
    assert Path("/dev/null").is_char_device() and not Path("/dev/.null.natftp-part").exists()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    r = natftp("get", s.url("f.bin"), str(fifo))
    out, _ = reader.communicate(timeout=60)
    assert r.returncode == 0 and out == b"x" * 100_000, r.stderr
    assert fifo.is_fifo()
