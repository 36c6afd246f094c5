"""The client library against a real pyftpdlib server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from natftp.client import (
    BlockingClient,
    Client,
    ConnectionFailed,
    ConnectionLost,
    DataConnectionError,
    FTPError,
    LoginError,
    PermanentError,
    TimeoutError,
)
from natftp.client.mirror import MirrorError

from support.clientpeers import (
    Blackhole,
    Forwarder,
    Server,
    free_port,
    make_tree,
    sha256,
    tree_digest,
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- basics: list, upload, download, both APIs -----------------------------------------


def _async_session(url: str, blob: bytes, tmp: Path) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with Client(url) as ftp:
            await ftp.mkdir("sub dir")
            await ftp.upload(blob, "sub dir/blob.bin")
            await ftp.upload(io.BytesIO(b"hello\n"), "hello.txt")
            await ftp.download("sub dir/blob.bin", tmp / "async.bin")
            names = sorted((e.name, e.type, e.size) for e in await ftp.list())
            sub = sorted((e.name, e.size) for e in await ftp.list("sub dir"))
            st = await ftp.stat("sub dir/blob.bin")
            walked = [(d, sorted(f.name for f in fs)) async for d, _, fs in ftp.walk()]
            return {"names": names, "sub": sub, "size": st.size, "type": st.type,
                    "sha": sha256(tmp / "async.bin"), "walk": walked,
                    "hello": await ftp.read_bytes("hello.txt")}
    return run(go())  # type: ignore[no-any-return]


def _blocking_session(url: str, blob: bytes, tmp: Path) -> dict[str, Any]:
    with BlockingClient(url) as ftp:
        ftp.mkdir("sub dir")
        ftp.upload(blob, "sub dir/blob.bin")
        ftp.upload(io.BytesIO(b"hello\n"), "hello.txt")
        ftp.download("sub dir/blob.bin", tmp / "blocking.bin")
        names = sorted((e.name, e.type, e.size) for e in ftp.list())
        sub = sorted((e.name, e.size) for e in ftp.list("sub dir"))
        st = ftp.stat("sub dir/blob.bin")
        walked = [(d, sorted(f.name for f in fs)) for d, _, fs in ftp.walk()]
        return {"names": names, "sub": sub, "size": st.size, "type": st.type,
                "sha": sha256(tmp / "blocking.bin"), "walk": walked,
                "hello": ftp.read_bytes("hello.txt")}


def test_blocking_and_async_apis_give_the_same_results(
        ftpd: Callable[..., Server], tmp_path: Path) -> None:
    blob = os.urandom(700_001)
    a = _async_session(ftpd().url, blob, tmp_path)
    b = _blocking_session(ftpd().url, blob, tmp_path)
    assert a == b
    assert a["sha"] == hashlib.sha256(blob).hexdigest()
    assert a["size"] == len(blob) and a["type"] == "file"
    assert ("sub dir", "dir") == a["names"][1][:2]
    assert a["walk"] == [("", ["hello.txt"]), ("sub dir", ["blob.bin"])]
    assert a["hello"] == b"hello\n"


def test_upload_download_file_objects_and_progress(server: Server, tmp_path: Path) -> None:
    data = os.urandom(2_000_000)
    seen: list[tuple[int, int | None]] = []
    with BlockingClient(server.url) as ftp:
        ftp.upload(io.BytesIO(data), "p.bin", progress=lambda d, t: seen.append((d, t)))
        assert seen[-1] == (len(data), len(data))
        sink = io.BytesIO()
        got: list[tuple[int, int | None]] = []
        ftp.download("p.bin", sink, progress=lambda d, t: got.append((d, t)))
    assert sink.getvalue() == data
    assert got[0] == (0, len(data)) and got[-1] == (len(data), len(data))
    assert (server.root / "p.bin").read_bytes() == data


def test_directory_operations(server: Server) -> None:
    with BlockingClient(server.url) as ftp:
        ftp.mkdir("a/b/c", parents=True)
        ftp.mkdir("a/b/c", parents=True)  # exists already: fine with parents
        with pytest.raises(PermanentError) as ei:
            ftp.mkdir("a")
        assert ei.value.code == 550
        ftp.upload(b"x", "a/b/c/f")
        ftp.rename("a/b/c/f", "a/g")
        assert ftp.exists("a/g") and not ftp.exists("a/b/c/f")
        ftp.remove("a/g")
        ftp.rmdir("a/b/c")
        assert ftp.stat("a/b").is_dir
        assert ftp.pwd() == "/"
    assert sorted(p.name for p in (server.root / "a").iterdir()) == ["b"]


def test_list_falls_back_to_list_parsing_without_mlsd(
        ftpd: Callable[..., Server], caplog: pytest.LogCaptureFixture) -> None:
    s = ftpd("--no-mlsd")
    (s.root / "日本 語.txt").write_bytes(b"12345")
    (s.root / "d d").mkdir()
    caplog.set_level(logging.DEBUG, logger="natftp.client")
    with BlockingClient(s.url) as ftp:
        entries = {e.name: e for e in ftp.list()}
        st = ftp.stat("日本 語.txt")
        dst = ftp.stat("d d")
    assert entries["日本 語.txt"].size == 5 and entries["日本 語.txt"].is_file
    assert entries["d d"].is_dir
    assert entries["日本 語.txt"].precision == 60.0  # LIST times are to the minute
    assert st.size == 5 and st.modified is not None and dst.is_dir
    assert not any("MLSD" in r.getMessage() and ">" in r.getMessage() for r in caplog.records)


# -- errors ---------------------------------------------------------------------------


def test_wrong_password_is_a_login_error_with_code(server: Server) -> None:
    with pytest.raises(LoginError) as ei, BlockingClient(server.url.replace("wonder%20land",
                                                                           "nope")):
        pass
    assert ei.value.code == 530


def test_missing_file_is_a_permanent_error_with_code_and_text(server: Server,
                                                              tmp_path: Path) -> None:
    with BlockingClient(server.url) as ftp:
        with pytest.raises(PermanentError) as ei:
            ftp.download("missing.bin", tmp_path / "m")
        assert ei.value.code == 550 and ei.value.command == "RETR"
        assert "No such file" in ei.value.text
        assert ftp.list() == []  # the session is still in step


def test_refused_connection_and_silent_server() -> None:
    port = free_port()
    with pytest.raises(ConnectionFailed):
        run(Client(f"ftp://127.0.0.1:{port}/").connect())
    import socket
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        c = Client(f"ftp://127.0.0.1:{silent.getsockname()[1]}/", connect_timeout=0.5)
        with pytest.raises(TimeoutError) as ei:
            run(c.connect())
        assert isinstance(ei.value, FTPError)


# -- data-connection strategy -----------------------------------------------------------


def test_wrong_pasv_address_is_ignored_by_default_and_followed_when_trusted(
        ftpd: Callable[..., Server], caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    s = ftpd("--no-epsv", "--masquerade", "127.0.0.2", "--passive-ports", f"{port}-{port}")
    (s.root / "f.txt").write_bytes(b"through the right door\n")
    fwd = Forwarder("127.0.0.2", port, "127.0.0.1")
    try:
        caplog.set_level(logging.INFO, logger="natftp.client")
        with BlockingClient(s.url, mode="passive") as ftp:
            assert ftp.read_bytes("f.txt") == b"through the right door\n"
            assert ftp.data_strategy == "pasv"
            assert ftp.last_data_address == ("127.0.0.1", port)
        assert fwd.accepted == 0
        assert any("PASV advertised 127.0.0.2" in r.getMessage() for r in caplog.records)

        with BlockingClient(s.url, mode="passive", trust_pasv_address=True) as ftp:
            assert ftp.read_bytes("f.txt") == b"through the right door\n"
            assert ftp.last_data_address == ("127.0.0.2", port)
        assert fwd.accepted == 1
    finally:
        fwd.close()


def test_epsv_refused_falls_back_to_pasv_and_is_remembered(
        ftpd: Callable[..., Server], caplog: pytest.LogCaptureFixture) -> None:
    s = ftpd("--no-epsv")
    caplog.set_level(logging.DEBUG, logger="natftp.client")
    with BlockingClient(s.url) as ftp:
        ftp.upload(b"1", "one")
        ftp.upload(b"2", "two")
        assert ftp.data_strategy == "pasv"
    sent = [r.getMessage() for r in caplog.records if r.getMessage().startswith("> ")]
    assert sent.count("> EPSV") == 1  # remembered: not asked again
    assert any("EPSV did not work" in r.getMessage() and "500" in r.getMessage()
               for r in caplog.records)


def test_pasv_refused_without_epsv_falls_back_to_active(ftpd: Callable[..., Server]) -> None:
    s = ftpd("--no-pasv")
    with BlockingClient(s.url, epsv=False) as ftp:
        ftp.upload(b"active", "a.txt")
        assert ftp.read_bytes("a.txt") == b"active"
        assert ftp.data_strategy == "active"


def test_no_passive_at_all_falls_back_to_active(ftpd: Callable[..., Server]) -> None:
    s = ftpd("--no-pasv", "--no-epsv")
    with BlockingClient(s.url) as ftp:
        assert ftp.list() == []
        assert ftp.data_strategy == "active"


def test_passive_only_mode_reports_every_attempt(ftpd: Callable[..., Server]) -> None:
    s = ftpd("--no-pasv", "--no-epsv")
    with BlockingClient(s.url, mode="passive") as ftp:
        with pytest.raises(DataConnectionError) as ei:
            ftp.list()
        assert [a.strategy for a in ei.value.attempts] == ["epsv", "pasv"]
        assert "500" in str(ei.value)


def test_refused_data_connection_moves_to_the_next_strategy(
        ftpd: Callable[..., Server]) -> None:
    # PASV points at 127.0.0.2 where nothing listens; trusting it gets "refused"
    s = ftpd("--no-epsv", "--masquerade", "127.0.0.2")
    with BlockingClient(s.url, trust_pasv_address=True) as ftp:
        ftp.upload(b"ok", "x")
        assert ftp.data_strategy == "active"


def test_timed_out_data_connection_moves_to_the_next_strategy(
        ftpd: Callable[..., Server]) -> None:
    port = free_port()
    s = ftpd("--no-epsv", "--masquerade", "127.0.0.2", "--passive-ports", f"{port}-{port}")
    hole = Blackhole("127.0.0.2", port)
    try:
        with BlockingClient(s.url, trust_pasv_address=True, data_timeout=0.5) as ftp:
            ftp.upload(b"ok", "x")
            assert ftp.data_strategy == "active"
            assert (s.root / "x").read_bytes() == b"ok"
    finally:
        hole.close()


def test_active_address_is_what_the_server_is_told(ftpd: Callable[..., Server],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    s = ftpd()
    caplog.set_level(logging.DEBUG, logger="natftp.client")
    # 127.0.0.3 is us too (all of 127/8 is loopback), so the server can connect there
    with BlockingClient(s.url, mode="active", active_address="127.0.0.3") as ftp:
        with pytest.raises(DataConnectionError):
            ftp.list()  # we listen on 127.0.0.1 only: the server cannot reach 127.0.0.3
    assert any(r.getMessage().startswith("> EPRT |1|127.0.0.3|") for r in caplog.records)


# -- resume after a killed connection -----------------------------------------------------


def test_download_resumes_after_the_server_is_killed_mid_transfer(
        ftpd: Callable[..., Server], tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    data = os.urandom(3_000_000)
    (root / "big.bin").write_bytes(data)
    slow = ftpd("--rate", "1000000", root=root)
    dest = tmp_path / "big.bin"

    def killer(done: int, total: int | None) -> None:
        if done >= 400_000:
            slow.kill()

    with pytest.raises((ConnectionLost, DataConnectionError)):
        with BlockingClient(slow.url) as ftp:
            ftp.download("big.bin", dest, progress=killer)
    assert not dest.exists()  # only a complete download takes the destination's name
    part = tmp_path / ".big.bin.natftp-part"
    partial = part.stat().st_size
    assert 400_000 <= partial < len(data)
    assert part.read_bytes() == data[:partial]

    fresh = ftpd(root=root)
    with BlockingClient(fresh.url) as ftp:
        got = ftp.download("big.bin", dest, resume=True)
    assert got == len(data) - partial
    assert sha256(dest) == hashlib.sha256(data).hexdigest()
    assert not part.exists()


def test_upload_resumes_after_the_server_is_killed_mid_transfer(
        ftpd: Callable[..., Server], tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    src = tmp_path / "up.bin"
    data = os.urandom(3_000_000)
    src.write_bytes(data)
    slow = ftpd("--rate", "1000000", root=root)

    def killer(done: int, total: int | None) -> None:
        # Bytes sent are not bytes stored: under load the server may not have written
        # any yet, so kill only once the server's file holds something (bounded wait).
        if done >= 1_000_000 and slow.proc.poll() is None:
            target = root / "up.bin"
            for _ in range(100):
                if target.exists() and target.stat().st_size > 0:
                    break
                time.sleep(0.05)
            slow.kill()

    with pytest.raises((ConnectionLost, DataConnectionError)):
        with BlockingClient(slow.url) as ftp:
            ftp.upload(src, "up.bin", progress=killer)
    partial = (root / "up.bin").stat().st_size
    assert 0 < partial < len(data)

    fresh = ftpd(root=root)
    with BlockingClient(fresh.url) as ftp:
        sent = ftp.upload(src, "up.bin", resume=True)
    assert sent == len(data) - partial
    assert sha256(root / "up.bin") == hashlib.sha256(data).hexdigest()


# -- mirror -----------------------------------------------------------------------------


def test_mirror_round_trip_with_japanese_and_spaces(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "src"
    back = tmp_path / "back"
    src.mkdir()
    make_tree(src)

    with BlockingClient(server.url) as ftp:
        dry = ftp.mirror_up(src, "mirror", dry_run=True)
        assert dry.copied == 5 and not (server.root / "mirror").exists()
        up = ftp.mirror_up(src, "mirror")
        assert up.copied == 5
        assert tree_digest(server.root / "mirror") == tree_digest(src)
        again = ftp.mirror_up(src, "mirror")
        assert again.actions == []  # sizes and times agree: nothing to do

        down = ftp.mirror_down("mirror", back)
        assert tree_digest(back) == tree_digest(src)
        assert ftp.mirror_down("mirror", back).actions == []
        assert down.bytes == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())

        # a change on the source side, and deletion propagation
        (src / "top.txt").write_text("changed, longer\n")
        (src / "with space" / "big one.bin").unlink()
        keep = ftp.mirror_up(src, "mirror")
        assert [a.path for a in keep.actions] == ["top.txt"]
        assert (server.root / "mirror" / "with space" / "big one.bin").exists()
        pruned = ftp.mirror_up(src, "mirror", delete=True)
        assert [(a.kind, a.path) for a in pruned.actions] == [
            ("delete", "with space/big one.bin")]
        ftp.mirror_down("mirror", back, delete=True)
    assert tree_digest(server.root / "mirror") == tree_digest(src)
    assert tree_digest(back) == tree_digest(src)


def test_async_mirror_down_of_missing_remote_is_an_error_not_an_empty_plan(
        server: Server, tmp_path: Path) -> None:
    """A missing source must not read as an empty tree: with --delete that empty tree
    would delete the whole destination (issue 14)."""
    async def go() -> None:
        async with Client(server.url) as ftp:
            await ftp.mirror_down("nope", tmp_path / "x", dry_run=True, delete=True)
    with pytest.raises(MirrorError, match="'nope' is not on the server"):
        run(go())
