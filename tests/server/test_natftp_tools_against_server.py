"""natftp's own client and doctor against natftp's own server (and the CLI exit codes)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from natftp.client import BlockingClient, Client
from natftp.doctor.checks import diagnose
from natftp.doctor.result import FAIL


def test_client_round_trip_and_mirror_against_natftp(server, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src"
    (src / "sub dir").mkdir(parents=True)
    (src / "sub dir" / "進捗どうですか.jpg").write_bytes(data)
    (src / "a b.txt").write_bytes(b"hello\n")
    with BlockingClient(server.url()) as ftp:
        ftp.upload(src / "a b.txt", "a b.txt")
        assert ftp.data_strategy == "epsv"
        assert [e.name for e in ftp.list("/")] == ["a b.txt"]
        result = ftp.mirror_up(src, "/tree")
        assert result is not None
    got = (server.root / "tree" / "sub dir" / "進捗どうですか.jpg").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

    async def down() -> bytes:
        async with Client(server.url(), epsv=False) as ftp:
            out = tmp_path / "back.jpg"
            await ftp.download("/tree/sub dir/進捗どうですか.jpg", out)
            assert ftp.data_strategy == "pasv"
            return out.read_bytes()

    assert asyncio.run(down()) == data


def test_doctor_finds_a_healthy_natftp_server_all_green(server) -> None:
    report = asyncio.run(diagnose(server.url(), timeout=2.0, write=True))
    assert report.server == "natftp", report.server
    assert report.ok, [(r.id, r.verdict, r.summary) for r in report.results]


def test_doctor_cli_exit_code_zero_for_healthy_natftp(server) -> None:
    r = subprocess.run([sys.executable, "-m", "natftp", "doctor", server.url(), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert '"natftp"' in r.stdout


def test_doctor_tls_against_natftp_with_required_session_reuse_is_green(
        natftp_server, tmp_path: Path) -> None:
    """The doctor tries a data connection without resuming first; natftp's 522 makes it
    retry resuming, pass, and report that the server requires session reuse."""
    srv = natftp_server(args=["--tls", "--state-dir", str(tmp_path / "state"),
                              "--tls-require-session-reuse", "--tls-required", "data"])
    report = asyncio.run(diagnose(srv.url(), tls=True, timeout=2.0, write=True))
    assert report.server == "natftp", report.server
    assert report.ok, [(r.id, r.verdict, r.summary) for r in report.results]
    listing = next(r for r in report.results if r.id == "listing")
    assert listing.facts["session_reuse_required"] is True, listing
    assert any("requires TLS session reuse" in e for e in listing.evidence), listing.evidence
    assert "522 Data connection refused" in srv.log


def test_doctor_tls_against_natftp_without_tls_names_the_natftp_flag(server) -> None:
    report = asyncio.run(diagnose(server.url(), tls=True, timeout=2.0))
    tls = next(r for r in report.results if r.id == "tls")
    assert tls.verdict == FAIL, tls
    assert any("--tls" in f and "tls.enabled" in f for f in tls.fix), tls.fix
