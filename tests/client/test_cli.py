"""`natftp ls/get/put/mirror/rm/mkdir/mv` as a user runs them: a subprocess against a
real pyftpdlib server, checking output, files and exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from support.clientpeers import (
    NATFTP,
    PASSWORD,
    Server,
    free_port,
    make_tree,
    natftp,
    sha256,
    tree_digest,
)


def test_ls_prints_names_and_long_format(server: Server) -> None:
    (server.root / "a file.txt").write_bytes(b"12345")
    (server.root / "日本").mkdir()
    r = natftp("ls", server.url)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["a file.txt", "日本/"]
    r = natftp("ls", "-l", server.url)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("-") and lines[0].split()[1] == "5"
    assert lines[0].endswith(" a file.txt") and lines[1].startswith("d")


def test_get_and_put_round_trip_with_sha256(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "up load.bin"
    src.write_bytes(os.urandom(1_500_000))
    r = natftp("put", str(src), server.url + "in%20here/", cwd=tmp_path)
    assert r.returncode == 5  # the directory does not exist: a 5xx from the server
    (server.root / "in here").mkdir()
    r = natftp("put", str(src), server.url + "in%20here/", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sha256(server.root / "in here" / "up load.bin") == sha256(src)
    src.rename(tmp_path / "original.bin")
    r = natftp("get", server.url + "in%20here/up%20load.bin", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sha256(tmp_path / "up load.bin") == sha256(tmp_path / "original.bin")
    (tmp_path / "dl").mkdir()
    r = natftp("get", server.url + "in%20here/up%20load.bin", str(tmp_path / "dl"))
    assert r.returncode == 0, r.stderr
    assert sha256(tmp_path / "dl" / "up load.bin") == sha256(tmp_path / "original.bin")


def test_get_to_stdout_and_put_from_stdin(server: Server) -> None:
    r = natftp("put", "-", server.url + "from-stdin.txt", stdin=b"piped\n")
    assert r.returncode == 0, r.stderr
    assert (server.root / "from-stdin.txt").read_bytes() == b"piped\n"
    r = natftp("get", server.url + "from-stdin.txt", "-")
    assert r.returncode == 0 and r.stdout == "piped\n"


def test_get_continue_resumes_a_partial_file(server: Server, tmp_path: Path) -> None:
    data = os.urandom(500_000)
    (server.root / "r.bin").write_bytes(data)
    (tmp_path / "r.bin").write_bytes(data[:123_456])
    r = natftp("get", "-c", "-v", server.url + "r.bin", str(tmp_path / "r.bin"))
    assert r.returncode == 0, r.stderr
    assert "> REST 123456" in r.stderr
    assert (tmp_path / "r.bin").read_bytes() == data


def test_verbose_shows_the_dialogue_with_the_password_masked(server: Server) -> None:
    r = natftp("ls", "-v", server.url)
    assert r.returncode == 0
    assert "> USER alice" in r.stderr and "> PASS ****" in r.stderr
    assert "< 230" in r.stderr and "> EPSV" in r.stderr
    assert PASSWORD not in r.stderr and "wonder%20land" not in r.stderr


def test_mode_switches_reach_the_client(ftpd: Callable[..., Server]) -> None:
    s = ftpd()
    r = natftp("ls", "-v", "--no-epsv", s.url)
    assert r.returncode == 0 and "> PASV" in r.stderr and "> EPSV" not in r.stderr
    r = natftp("ls", "-v", "--active", s.url)
    assert r.returncode == 0 and "> EPRT |1|127.0.0.1|" in r.stderr
    assert "> PASV" not in r.stderr
    r = natftp("ls", "--active", "--passive", s.url)
    assert r.returncode == 2
    m = ftpd("--no-epsv", "--masquerade", "127.0.0.2")
    r = natftp("ls", "-v", "--passive", m.url)
    assert r.returncode == 0 and "connecting to 127.0.0.1 instead" in r.stderr
    r = natftp("ls", "-v", "--passive", "--trust-pasv-address", "--data-timeout", "1", m.url)
    assert r.returncode == 6, r.stderr  # 127.0.0.2 has no listener: transfer failure
    assert "127.0.0.2" in r.stderr


def test_exit_codes(server: Server, tmp_path: Path) -> None:
    assert natftp("ls", server.url.replace("wonder%20land", "bad")).returncode == 4
    assert natftp("get", server.url + "missing.bin", str(tmp_path / "x")).returncode == 5
    assert natftp("ls", f"ftp://127.0.0.1:{free_port()}/").returncode == 3
    assert natftp("ls", "http://example.com/").returncode == 2
    assert natftp("put", str(tmp_path / "no-such-file"), server.url).returncode == 5
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        r = natftp("ls", "--timeout", "0.5", f"ftp://127.0.0.1:{silent.getsockname()[1]}/")
    assert r.returncode == 7, r.stderr


def test_credentials_from_user_option_and_netrc(server: Server, tmp_path: Path) -> None:
    bare = f"ftp://{server.host}:{server.port}/"
    (server.root / "x").write_bytes(b"")
    r = natftp("ls", "--user", f"alice:{PASSWORD}", bare, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "x", r.stderr
    netrc = tmp_path / ".netrc"
    netrc.write_text(f'machine {server.host} login alice password "{PASSWORD}"\n')
    netrc.chmod(0o600)
    r = natftp("ls", bare, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "x", r.stderr
    r = natftp("ls", "-v", "--netrc-file", str(tmp_path / "none"), bare, cwd=tmp_path)
    assert "> USER anonymous" in r.stderr


def test_mkdir_mv_rm(server: Server) -> None:
    u = server.url
    assert natftp("mkdir", "-p", u + "a/b%20c").returncode == 0
    assert (server.root / "a" / "b c").is_dir()
    assert natftp("mkdir", u + "a").returncode == 5
    (server.root / "a" / "b c" / "f").write_bytes(b"1")
    assert natftp("mv", u + "a/b%20c/f", "a/g").returncode == 0
    assert (server.root / "a" / "g").exists()
    assert natftp("rm", u + "a/g").returncode == 0
    assert natftp("rm", u + "a").returncode == 5  # not empty
    (server.root / "a" / "b c" / "deep").write_bytes(b"1")
    assert natftp("rm", "-r", u + "a").returncode == 0
    assert not (server.root / "a").exists()


def test_mirror_both_directions_with_dry_run_and_delete(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    src.mkdir()
    make_tree(src)
    r = natftp("mirror", "--dry-run", str(src), server.url + "m")
    assert r.returncode == 0, r.stderr
    assert "would copy" in r.stdout and "日本語 フォルダ/ファイル 1.txt" in r.stdout
    assert not (server.root / "m").exists()
    r = natftp("mirror", str(src), server.url + "m")
    assert r.returncode == 0, r.stderr
    assert tree_digest(server.root / "m") == tree_digest(src)
    back = tmp_path / "back"
    r = natftp("mirror", server.url + "m", str(back))
    assert r.returncode == 0, r.stderr
    assert tree_digest(back) == tree_digest(src)
    (server.root / "m" / "top.txt").unlink()
    r = natftp("mirror", "--delete", server.url + "m", str(back))
    assert r.returncode == 0 and "delete top.txt" in r.stdout
    assert not (back / "top.txt").exists()
    assert natftp("mirror", str(src), str(back)).returncode == 2


def test_help_documents_exit_codes_and_switches() -> None:
    r = natftp("get", "--help")
    assert r.returncode == 0
    for word in ("--active", "--passive", "--no-epsv", "--trust-pasv-address",
                 "--active-address", "Exit codes", "netrc"):
        assert word in r.stdout


def test_progress_bar_on_a_terminal_only(server: Server, tmp_path: Path) -> None:
    import shlex
    (server.root / "p.bin").write_bytes(os.urandom(3_000_000))
    cmd = shlex.join([str(NATFTP), "get", server.url + "p.bin", str(tmp_path / "p.bin")])
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                       timeout=60, env={**os.environ, "COLUMNS": "120"})
    shown = r.stdout.decode(errors="replace")
    assert r.returncode == 0, shown
    assert "p.bin" in shown and "/s" in shown and "3.0" in shown  # name, rate, size
    assert sha256(tmp_path / "p.bin") == sha256(server.root / "p.bin")
    piped = natftp("get", server.url + "p.bin", str(tmp_path / "q.bin"))
    assert piped.returncode == 0 and piped.stdout == "" and piped.stderr == ""


def test_get_of_a_missing_file_leaves_the_local_file_alone(server: Server,
                                                          tmp_path: Path) -> None:
    """The destination is opened only after the server accepted RETR: a 550 must not
    truncate (or create) the local file."""
    keep = tmp_path / "keep.txt"
    keep.write_text("precious\n")
    r = natftp("get", server.url + "no-such-file", str(keep))
    assert r.returncode == 5 and "550" in r.stderr, r.stderr
    assert keep.read_text() == "precious\n"
    r = natftp("get", server.url + "no-such-file", cwd=tmp_path)
    assert r.returncode == 5
    assert not (tmp_path / "no-such-file").exists()
