"""storage/s3.py against a real S3 service (rclone serve s3 on loopback, SigV4).

Each test names the FTP semantic it pins; what the bucket holds afterwards is checked
through S3 itself (a second client view), never by trusting the backend's own answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
from s3tools import BUCKET, RcloneS3

from natftp.storage import s3


def settings(srv: RcloneS3, **kw: object) -> s3.S3Settings:
    base: dict[str, object] = dict(bucket=BUCKET, endpoint=srv.endpoint, region="us-east-1",
                                   access_key_id="natftp-test-key",
                                   secret_access_key="natftp-test-secret/with+signs")
    base.update(kw)
    return s3.S3Settings(**base)  # type: ignore[arg-type]


def run(coro_fn, srv: RcloneS3, home: str = "t", **kw: object):  # type: ignore[no-untyped-def]
    """Run ``coro_fn(storage)`` on a fresh backend (its own loop and connection pool)."""
    async def main():  # type: ignore[no-untyped-def]
        b = s3.S3Backend(settings(srv, **kw))
        try:
            return await coro_fn(b.home(home))
        finally:
            await b.close()
    return asyncio.run(main())


async def names(st: s3.S3Storage, vpath: str) -> list[str]:
    out: list[str] = []
    async for page in st.listdir(vpath):
        out += [f.name + ("/" if f.is_dir else "") for f in page]
    return sorted(out)


async def read_all(st: s3.S3Storage, vpath: str, offset: int = 0) -> bytes:
    r = await st.open_read(vpath, offset)
    try:
        return b"".join([c async for c in r.chunks()])
    finally:
        r.close()


async def store(st: s3.S3Storage, vpath: str, data: bytes, piece: int = 1 << 20) -> None:
    up = await st.open_write(vpath)
    try:
        for i in range(0, len(data), piece):
            await up.write(data[i:i + piece])
        await up.commit()
    except BaseException:
        up.discard()
        raise


def test_store_then_read_back_small_and_multipart(rclone_s3: RcloneS3) -> None:
    small = os.urandom(1000)
    big = os.urandom(s3.PART_SIZE * 2 + 12345)  # three parts, the last one short

    async def go(st: s3.S3Storage) -> tuple[bytes, bytes, bytes, list[str]]:
        await store(st, "/small.bin", small)
        await store(st, "/日本語/大きい.bin", big)
        return (await read_all(st, "/small.bin"), await read_all(st, "/日本語/大きい.bin"),
                await read_all(st, "/日本語/大きい.bin", s3.PART_SIZE + 7),
                await names(st, "/"))
    a, b, tail, top = run(go, rclone_s3)
    assert a == small
    assert hashlib.sha256(b).digest() == hashlib.sha256(big).digest()
    assert tail == big[s3.PART_SIZE + 7:]  # a ranged GET (REST)
    assert top == ["small.bin", "日本語/"]
    # the object is a plain file of the bucket directory: the bytes really are there
    assert (rclone_s3.bucket_dir() / "t/日本語/大きい.bin").read_bytes() == big


def test_discarded_upload_leaves_the_old_object_and_no_new_one(rclone_s3: RcloneS3) -> None:
    async def go(st: s3.S3Storage) -> tuple[bytes, list[str]]:
        await store(st, "/keep.bin", b"old contents")
        up = await st.open_write("/keep.bin")
        await up.write(os.urandom(s3.PART_SIZE * 2 + 5))  # two parts sent
        assert up.upload_id is not None
        up.discard()
        up2 = await st.open_write("/new.bin")
        await up2.write(os.urandom(s3.PART_SIZE + 1))
        up2.discard()
        await asyncio.wait(st.backend.pending, timeout=30)
        return await read_all(st, "/keep.bin"), await names(st, "/")
    old, listed = run(go, rclone_s3, home="discard")
    assert old == b"old contents"
    assert listed == ["keep.bin"]


def test_listing_pages_a_prefix_of_many_objects(tmp_path: Path) -> None:
    """2,500 objects: three ListObjectsV2 pages, given as pages, each name once."""
    from s3tools import start_rclone

    root = tmp_path / "data"
    many = root / BUCKET / "many"
    many.mkdir(parents=True)
    for i in range(2500):
        (many / f"f{i:05d}").write_bytes(b"x")
    (many / "sub").mkdir()
    (many / "sub" / "inner").write_bytes(b"y")
    srv = start_rclone(root)
    try:
        async def go(st: s3.S3Storage) -> list[int]:
            sizes = []
            seen: list[str] = []
            async for page in st.listdir("/many"):
                sizes.append(len(page))
                seen += [f.name for f in page]
            assert sorted(seen) == sorted([f"f{i:05d}" for i in range(2500)] + ["sub"])
            return sizes
        sizes = run(go, srv, home="")
    finally:
        srv.stop()
    assert len(sizes) >= 3 and max(sizes) <= s3.PAGE


def test_mkdir_rmdir_and_markers_on_a_service_that_maps_keys_to_files(
        rclone_s3: RcloneS3) -> None:
    """rclone turns a ``dir/`` marker into a file named ``dir``: the first MKD finds
    that out, removes the file, and keeps the directory in the session."""
    async def go(st: s3.S3Storage) -> None:
        await st.mkdir("/d")
        assert st.backend.markers is False
        assert await st.is_dir("/d")
        assert await names(st, "/") == ["d/"]
        with pytest.raises(s3.S3StorageError, match="exists"):
            await st.mkdir("/d")
        await store(st, "/d/f.txt", b"1")
        assert "/d" not in st.made  # a key holds it now, for everyone
        with pytest.raises(s3.S3StorageError, match="not empty"):
            await st.rmdir("/d")
        await st.remove("/d/f.txt")
        with pytest.raises(s3.S3StorageError, match="no such"):
            await st.rmdir("/nothing")
        await st.mkdir("/e")
        await st.rmdir("/e")
        assert not await st.is_dir("/e")
    run(go, rclone_s3, home="dirs")
    assert not (rclone_s3.bucket_dir() / "dirs" / "d").is_file()


def test_rename_file_is_copy_then_delete_and_dir_limit(rclone_s3: RcloneS3) -> None:
    async def go(st: s3.S3Storage) -> list[str]:
        await store(st, "/a.txt", b"A")
        await st.rename("/a.txt", "/b.txt")
        assert await read_all(st, "/b.txt") == b"A"
        for i in range(3):
            await store(st, f"/dir/{i}", b"x")
        await st.rename("/dir", "/moved")  # 3 objects, the limit: moved
        return await names(st, "/")
    assert run(go, rclone_s3, home="ren", rename_dir_limit=3) == ["b.txt", "moved/"]

    async def refused(st: s3.S3Storage) -> list[str]:
        with pytest.raises(s3.S3StorageError, match="rename_dir_limit") as e:
            await st.rename("/moved", "/again")
        assert "more than 2 objects" in str(e.value)
        return await names(st, "/moved")
    assert run(refused, rclone_s3, home="ren", rename_dir_limit=2) == ["0", "1", "2"]


def test_append_and_rest_store_without_a_kept_upload(rclone_s3: RcloneS3) -> None:
    """An object cannot be written into: APPE to it and REST+STOR with no kept upload
    are refused naming the cause; REST n + STOR of a missing name has nothing to resume
    (554, as on disk); APPE to a missing name is a new upload."""
    async def go(st: s3.S3Storage) -> bytes:
        await store(st, "/f", b"12345")
        for kw in ({"append": True}, {"offset": 5}):
            with pytest.raises(s3.S3StorageError, match="cannot append") as e:
                await st.open_write("/f", **kw)  # type: ignore[arg-type]
            assert e.value.code == 550
        with pytest.raises(s3.S3StorageError, match="nothing to resume") as e:
            await st.open_write("/missing", offset=5)
        assert e.value.code == 554
        up = await st.open_write("/new", append=True)
        await up.write(b"appended")
        await up.commit()
        return await read_all(st, "/new")
    assert run(go, rclone_s3, home="noappend") == b"appended"


def test_service_errors_name_their_cause(rclone_s3: RcloneS3) -> None:
    async def missing(st: s3.S3Storage) -> None:
        with pytest.raises(s3.S3StorageError, match="no such file") as e:
            await st.open_read("/nope")
        assert e.value.code == 550
        await st.backend.check()
    run(missing, rclone_s3)

    async def check(st: s3.S3Storage) -> None:
        await st.backend.check()
    with pytest.raises(s3.S3StorageError, match="does not exist") as e:
        run(check, rclone_s3, bucket="no-such-bucket")
    with pytest.raises(s3.S3StorageError, match="refused the server's S3 credentials"):
        run(check, rclone_s3, secret_access_key="wrong")
    with pytest.raises(s3.S3StorageError, match="cannot reach the object store"):
        run(check, rclone_s3, endpoint="http://127.0.0.1:9")
    assert e.value.code == 451


def test_parse_url() -> None:
    assert s3.parse_url("s3://b") == ("b", "")
    assert s3.parse_url("s3://b/x//y/") == ("b", "x/y")
    for bad in ("b/x", "s3://", "s3:///x", "s3://b/../x"):
        with pytest.raises(ValueError):
            s3.parse_url(bad)



async def interrupted(st: s3.S3Storage, vpath: str, data: bytes) -> bool:
    """Send ``data`` into an upload of ``vpath``, then fail it keeping what it can, as
    the server does when a transfer breaks: True when it was kept."""
    up = await st.open_write(vpath)
    await up.write(data)
    keeping = up.discard(keep=True)
    if up.settled is None:  # nothing reached the service
        assert not keeping
        return False
    return bool(await up.settled)


def test_an_interrupted_upload_is_kept_in_whole_parts_and_resumed(
        rclone_s3: RcloneS3) -> None:
    """Two whole parts and a piece of the third arrive, then the upload breaks: the
    multipart upload stays open with its two parts (SIZE's answer: 2 x PART_SIZE), the
    old object stays as it was, nothing new is listed; REST of exactly that size
    continues it (another offset: 554 naming the size) and completing it leaves no
    state behind."""
    data = os.urandom(s3.PART_SIZE * 3 + 777)
    two = 2 * s3.PART_SIZE

    async def go(st: s3.S3Storage) -> tuple[bytes, bytes, list[str]]:
        await store(st, "/dir/f.bin", b"old")
        assert await interrupted(st, "/dir/f.bin", data[:two + 12345])
        assert await st.kept_size("/dir/f.bin") == two
        old = await read_all(st, "/dir/f.bin")
        assert await names(st, "/") == ["dir/"]  # the state is not listed
        assert await names(st, "/dir") == ["f.bin"]
        for bad in (two - 1, two + 1):
            with pytest.raises(s3.S3StorageError, match=f"keeps {two} bytes") as e:
                await st.open_write("/dir/f.bin", offset=bad)
            assert e.value.code == 554
        up = await st.open_write("/dir/f.bin", offset=two)
        assert up.resumed and up.size == two
        # a second resume of the same name meanwhile: busy, as on disk
        with pytest.raises(s3.S3StorageError, match="another session") as e:
            await st.open_write("/dir/f.bin", append=True)
        assert e.value.code == 450
        await up.write(data[two:])
        await up.commit()
        assert await st.kept_size("/dir/f.bin") is None
        state = [o.object_name async for o in st._c._list_objects(
            st._bucket, prefix=st.backend.state)]
        return old, await read_all(st, "/dir/f.bin"), state
    old, new, state = run(go, rclone_s3, home="kept")
    assert old == b"old"
    assert hashlib.sha256(new).digest() == hashlib.sha256(data).digest()
    assert state == []


def test_a_kept_upload_goes_stale_deleted_or_expired(rclone_s3: RcloneS3) -> None:
    """A kept upload is not resumed once an object of its name was stored after it (the
    resume would mix two files); DELE removes it (also when only it exists); a sweep
    with age 0 aborts every one; an upload with no whole part keeps nothing."""
    piece = os.urandom(s3.PART_SIZE + 10)

    async def go(st: s3.S3Storage) -> None:
        assert await interrupted(st, "/a", piece)
        assert await st.kept_size("/a") == s3.PART_SIZE
        await store(st, "/a", b"stored after")
        assert await st.kept_size("/a") is None  # stale: dropped on the way
        assert await interrupted(st, "/b", piece)
        await st.remove("/b")  # only the kept upload: removed, no 550
        assert await st.kept_size("/b") is None
        with pytest.raises(s3.S3StorageError, match="no such file"):
            await st.remove("/b")
        assert await interrupted(st, "/c", piece)
        assert await st.backend.sweep(3600) == 0  # young: stays
        assert await st.backend.sweep(0) == 1
        assert await st.kept_size("/c") is None
        assert not await interrupted(st, "/d", piece[:1000])  # no whole part
        with pytest.raises(s3.S3StorageError, match="nothing to resume"):
            await st.open_write("/d", offset=1000)
    run(go, rclone_s3, home="stale")


def test_reserved_names_are_refused_and_unlisted(rclone_s3: RcloneS3) -> None:
    """The kept uploads' state lives under a name in the reserved pattern of upload
    files: no path may name it (553, as on disk)."""
    async def go(st: s3.S3Storage) -> None:
        for p in (f"/{s3.STATE}", f"/{s3.STATE}/x", "/d/.natftp-upload-f.part"):
            with pytest.raises(s3.StorageError, match="reserved") as e:
                await st.open_write(p)
            assert e.value.code == 553
    run(go, rclone_s3, home="")


def test_storage_is_a_restart_key_shown_without_its_secret() -> None:
    """A reload cannot swap the bucket under running sessions: [storage] is refused by
    name, and the refusal (which prints both settings) shows no secret key."""
    from natftp.server.config import from_dict, needs_restart

    def cfg(bucket: str) -> object:
        return from_dict({"storage": {"backend": "s3", "s3": {
            "bucket": bucket, "access_key_id": "AKIDEXAMPLE",
            "secret_access_key": "very-secret-key"}}})
    old, new = cfg("bucket-one"), cfg("bucket-two")
    (line,) = needs_restart(old, new)  # type: ignore[arg-type]
    assert line.startswith("storage: ") and "bucket-one" in line and "bucket-two" in line
    assert "very-secret-key" not in line and "AKIDEXAMPLE" not in line
    assert needs_restart(old, cfg("bucket-one")) == []  # type: ignore[arg-type]
