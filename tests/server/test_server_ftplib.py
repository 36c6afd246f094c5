"""Python's ftplib against natftp serve: passive, active, MLSD, big files, resume, names."""

from __future__ import annotations

import ftplib
import hashlib
import io
from pathlib import Path

import pytest

from support.servertools import Running

JAPANESE = "進捗どうですか.jpg"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def connect(r: Running, *, passive: bool = True) -> ftplib.FTP:
    f = ftplib.FTP(timeout=20, encoding="utf-8")
    f.connect(r.host, r.port)
    f.login(r.user, r.password)
    f.set_pasv(passive)
    return f


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_big_file_round_trip_with_sha256(any_server: Running, big_file: Path,
                                         passive: bool) -> None:
    f = connect(any_server, passive=passive)
    data = big_file.read_bytes()
    f.storbinary("STOR big.bin", io.BytesIO(data))
    assert sha((any_server.root / "big.bin").read_bytes()) == sha(data)
    out = io.BytesIO()
    f.retrbinary("RETR big.bin", out.write)
    assert sha(out.getvalue()) == sha(data)
    assert f.size("big.bin") == len(data)
    f.quit()


def test_listing_mlsd_and_names_with_spaces_and_japanese(any_server: Running) -> None:
    (any_server.root / "with space.txt").write_bytes(b"spaced")
    (any_server.root / "sub dir").mkdir()
    f = connect(any_server)
    f.storbinary(f"STOR {JAPANESE}", io.BytesIO(b"\xff\xd8jpeg"))
    assert (any_server.root / JAPANESE).read_bytes() == b"\xff\xd8jpeg"
    names = set(f.nlst())
    assert {"with space.txt", "sub dir", JAPANESE} <= names
    facts = dict(f.mlsd())
    assert facts["with space.txt"]["type"] == "file"
    assert facts["with space.txt"]["size"] == "6"
    assert facts["sub dir"]["type"] == "dir"
    assert facts[JAPANESE]["size"] == "6"
    lines: list[str] = []
    f.retrlines("LIST", lines.append)
    assert any(line.endswith(" with space.txt") and line.startswith("-rw") for line in lines)
    assert any(line.endswith(" sub dir") and line.startswith("d") for line in lines)
    out = io.BytesIO()
    f.retrbinary(f"RETR {JAPANESE}", out.write)
    assert out.getvalue() == b"\xff\xd8jpeg"
    f.quit()


def test_rename_delete_mkdir_rmdir_cwd(server: Running) -> None:
    f = connect(server)
    assert f.mkd("new dir") == "/new dir"
    f.cwd("new dir")
    assert f.pwd() == "/new dir"
    f.storbinary("STOR a.txt", io.BytesIO(b"A"))
    f.rename("a.txt", "b.txt")
    assert (server.root / "new dir" / "b.txt").read_bytes() == b"A"
    assert not (server.root / "new dir" / "a.txt").exists()
    f.delete("b.txt")
    assert not (server.root / "new dir" / "b.txt").exists()
    f.cwd("..")
    f.rmd("new dir")
    assert not (server.root / "new dir").exists()
    f.quit()


def test_ascii_mode_converts_line_ends_both_ways(server: Running) -> None:
    (server.root / "unix.txt").write_bytes(b"one\ntwo\n\nthree")
    f = connect(server)
    got: list[bytes] = []
    f.voidcmd("TYPE A")
    with f.transfercmd("RETR unix.txt") as conn:
        while chunk := conn.recv(8192):
            got.append(chunk)
    f.voidresp()
    assert b"".join(got) == b"one\r\ntwo\r\n\r\nthree"
    f.storlines("STOR dos.txt", io.BytesIO(b"a\r\nb\nc"))
    assert (server.root / "dos.txt").read_bytes() == b"a\nb\nc\n"
    f.quit()


def test_resume_download_with_rest(server: Running, big_file: Path) -> None:
    data = big_file.read_bytes()
    (server.root / "big.bin").write_bytes(data)
    f = connect(server)
    half = len(data) // 2 + 123
    out = io.BytesIO()
    f.retrbinary("RETR big.bin", out.write, rest=half)
    assert out.getvalue() == data[half:]
    f.quit()


def test_resume_upload_with_appe_and_rest_stor(server: Running, big_file: Path) -> None:
    data = big_file.read_bytes()
    f = connect(server)
    cut = 5_000_001
    f.storbinary("STOR up.bin", io.BytesIO(data[:cut]))  # the "interrupted" upload
    assert f.size("up.bin") == cut
    f.storbinary("APPE up.bin", io.BytesIO(data[cut:]))
    assert sha((server.root / "up.bin").read_bytes()) == sha(data)
    f.storbinary("STOR up2.bin", io.BytesIO(data[:cut]))
    f.storbinary("STOR up2.bin", io.BytesIO(data[cut:]), rest=cut)
    assert sha((server.root / "up2.bin").read_bytes()) == sha(data)
    f.quit()


def test_mlst_size_mdtm_and_mfmt(server: Running) -> None:
    (server.root / "x.txt").write_bytes(b"12345")
    f = connect(server)
    r = f.sendcmd("MLST x.txt")
    assert r.startswith("250-") and "type=file;size=5;" in r and " /x.txt" in r
    assert f.sendcmd("MFMT 20200102030405 x.txt") == "213 Modify=20200102030405; /x.txt"
    assert f.sendcmd("MDTM x.txt") == "213 20200102030405"
    assert (server.root / "x.txt").stat().st_mtime == 1577934245
    f.quit()


def test_stou_stores_under_a_new_name(server: Running) -> None:
    f = connect(server)
    f.voidcmd("TYPE I")
    conn, _ = f.ntransfercmd("STOU")
    conn.sendall(b"unique")
    conn.close()
    assert f.voidresp().startswith("226")
    files = [p for p in server.root.iterdir() if p.read_bytes() == b"unique"]
    assert len(files) == 1
    f.quit()


def test_abor_during_download_then_session_goes_on(server: Running, big_file: Path) -> None:
    (server.root / "big.bin").write_bytes(big_file.read_bytes())
    f = connect(server)
    f.voidcmd("TYPE I")
    conn = f.transfercmd("RETR big.bin")
    conn.recv(1024)
    resp = f.abort()
    # RFC 959: 426 closes the aborted RETR, then 226 answers the ABOR itself
    assert resp.startswith("426") and "aborted by ABOR" in resp
    assert f.getresp().startswith("226")
    conn.close()
    assert f.sendcmd("NOOP").startswith("200")
    out = io.BytesIO()
    f.retrbinary("RETR big.bin", out.write)
    assert len(out.getvalue()) == 16 << 20
    f.quit()
