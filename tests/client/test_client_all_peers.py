"""The client against every real peer from tests/support/peers.py (incl. Pure-FTPd), by fixture."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from natftp.client import BlockingClient


def test_upload_list_download_sha256_on_every_peer(ftp_peer, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    src = tmp_path / "up.bin"
    src.write_bytes(data)
    with BlockingClient(ftp_peer.url) as ftp:
        ftp.upload(src, "natftp client.bin")
        names = [e.name for e in ftp.list("")]
        assert "natftp client.bin" in names, (ftp_peer.kind, names)
        back = tmp_path / "back.bin"
        ftp.download("natftp client.bin", back)
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_pureftpd_resume_download(make_peer, tmp_path: Path) -> None:
    peer = make_peer("pure-ftpd")
    data = os.urandom(1024 * 1024)
    with BlockingClient(peer.url) as ftp:
        src = tmp_path / "src.bin"
        src.write_bytes(data)
        ftp.upload(src, "r.bin")
        part = tmp_path / "part.bin"
        part.write_bytes(data[:300_000])
        ftp.download("r.bin", part, resume=True)
    assert part.read_bytes() == data
