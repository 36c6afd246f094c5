"""The client against other real servers: vsftpd and ProFTPD (Debian binaries) and
pyftpdlib, each started on loopback by the test.

The servers come from tests/support/servers.py (the doctor's configurations: a system
user for vsftpd and ProFTPD).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from natftp.client import BlockingClient, PermanentError, ReplyError

from support import servers as peers
from support.clientpeers import make_tree, tree_digest

SERVERS: dict[str, Callable[[], AbstractContextManager[Any]]] = {
    "pyftpdlib": lambda: peers.pyftpd(),
    "vsftpd": lambda: peers.vsftpd(),
    "proftpd": lambda: peers.proftpd(),
}


@pytest.fixture(params=sorted(SERVERS))
def peer(request: pytest.FixtureRequest) -> Iterator[Any]:
    with SERVERS[request.param]() as running:
        yield running


def test_list_upload_download_sha256(peer: Any, tmp_path: Path) -> None:
    blob = os.urandom(1_234_567)
    with BlockingClient(peer.url) as ftp:
        assert "hello.txt" in [e.name for e in ftp.list()]
        assert ftp.read_bytes("hello.txt") == b"hello\n"
        ftp.upload(blob, "blob file.bin")
        ftp.download("blob file.bin", tmp_path / "b")
        st = ftp.stat("blob file.bin")
        assert ftp.data_strategy == "epsv"
    assert hashlib.sha256((tmp_path / "b").read_bytes()).digest() == \
        hashlib.sha256(blob).digest()
    assert st.size == len(blob) and st.is_file and st.modified is not None


def test_resume_both_directions(peer: Any, tmp_path: Path,
                                request: pytest.FixtureRequest) -> None:
    data = os.urandom(800_000)
    local = tmp_path / "r.bin"
    local.write_bytes(data)
    with BlockingClient(peer.url) as ftp:
        ftp.upload(data[:300_000], "r.bin")
        if "proftpd" in request.node.name:
            # ProFTPD refuses REST+STOR and APPE unless AllowStoreRestart is on: the
            # client tries both and reports the server's refusal
            with pytest.raises(ReplyError) as ei:
                ftp.upload(local, "r.bin", resume=True)
            assert ei.value.command == "APPE" and "Restart" in ei.value.text
            ftp.remove("r.bin")  # and AllowOverwrite is off by default too
            ftp.upload(local, "r.bin")
        else:
            assert ftp.upload(local, "r.bin", resume=True) == 500_000
        local.write_bytes(data[:100_000])
        assert ftp.download("r.bin", local, resume=True) == 700_000
    assert local.read_bytes() == data
    assert (peer.root / "r.bin").read_bytes() == data


def test_mirror_round_trip_and_directory_operations(peer: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    with BlockingClient(peer.url) as ftp:
        assert ftp.mirror_up(src, "m").copied == 5
        ftp.mirror_down("m", tmp_path / "back")
        assert ftp.mirror_up(src, "m").actions == []
        ftp.rename("m/top.txt", "m/日本語 フォルダ/top moved.txt")
        with pytest.raises(PermanentError):
            ftp.rmdir("m/with space")  # not empty
        ftp.mirror_up(src, "m", delete=True)
    assert tree_digest(tmp_path / "back") == tree_digest(src)
    assert tree_digest(peer.root / "m") == tree_digest(src)


def test_active_mode(peer: Any) -> None:
    with BlockingClient(peer.url, mode="active") as ftp:
        ftp.upload(b"active\n", "a.txt")
        assert ftp.read_bytes("a.txt") == b"active\n"
        assert ftp.data_strategy == "active"
