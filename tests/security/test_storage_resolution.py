"""LocalStorage's two resolutions agree: ``openat2(RESOLVE_BENEATH)`` where the kernel
has it, the portable component-by-component ``O_NOFOLLOW`` walk elsewhere (run here by
switching openat2 off, as on a kernel without it). And a storage-level race for chmod
(SITE CHMOD) and utime (MFMT). (This replaces
tests/server/test_storage_open_read.py: its reads are among these.)"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsrace import Swapper

from natftp.storage import local
from natftp.storage.local import Escape, LocalStorage, NotAllowed, StorageError


@pytest.fixture(params=["openat2", "walk"])
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "walk":
        monkeypatch.setattr(local, "_openat2", None)
    else:
        assert local._openat2 is not None, "this kernel (6.x) has openat2"
    return str(request.param)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "d" / "e").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (home / "f.txt").write_bytes(b"top")
    (home / "d" / "e" / "g.txt").write_bytes(b"deep")
    links = {
        "rel-dir": "d/e", "abs-dir": str(home / "d"), "out-dir": str(outside),
        "out-rel": "../outside", "out-file": str(outside / "secret"),
        "dotdot-in": "d/e/../../f.txt", "loop-a": "loop-b", "loop-b": "loop-a",
        "dangling": "nowhere", "home-itself": str(home), "via-proc": "/proc/self/root/etc",
    }
    for name, target in links.items():
        os.symlink(target, home / name)
    os.symlink("../../f.txt", home / "d" / "e" / "up-two")
    os.symlink("../../../outside/secret", home / "d" / "e" / "up-three")
    yield home, outside


def read(st: LocalStorage, vpath: str) -> bytes:
    fd, size = st.open_read(vpath)
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def test_reads_follow_links_that_stay_inside(tree: tuple[Path, Path], resolution: str,
                                            ) -> None:
    home, _ = tree
    st = LocalStorage(str(home))
    assert read(st, "/f.txt") == b"top"
    assert read(st, "/d/e/g.txt") == b"deep"
    assert read(st, "/rel-dir/g.txt") == b"deep"
    assert read(st, "/abs-dir/e/g.txt") == b"deep"
    assert read(st, "/dotdot-in") == b"top"
    assert read(st, "/d/e/up-two") == b"top"
    assert read(st, "/home-itself/f.txt") == b"top"
    assert read(st, "/abs-dir/e/up-two") == b"top"
    assert st.stat("/rel-dir").st_mode & stat.S_IFDIR
    assert st.is_dir("/home-itself/d") and not st.is_dir("/f.txt")
    assert [f.name for f in st.listdir("/abs-dir/e")] == ["g.txt", "up-two"]


@pytest.mark.parametrize("vpath", ["/out-dir/secret", "/out-rel/secret", "/out-file",
                                   "/d/e/up-three", "/rel-dir/up-three", "/via-proc/passwd"])
def test_links_leading_out_are_escapes_for_every_read(tree: tuple[Path, Path],
                                                      resolution: str, vpath: str) -> None:
    home, _ = tree
    st = LocalStorage(str(home))
    with pytest.raises(Escape):
        st.open_read(vpath)
    with pytest.raises(Escape):
        st.stat(vpath)
    with pytest.raises(Escape):
        st.set_mtime(vpath, 0)
    # SITE CHMOD acts on the name itself: a link there is refused as a link
    with pytest.raises(StorageError, match="outside the home|symbolic link"):
        st.chmod(vpath, 0o600)


def test_writes_through_a_link_leading_out_are_escapes(tree: tuple[Path, Path],
                                                       resolution: str) -> None:
    home, outside = tree
    st = LocalStorage(str(home))
    for vpath in ("/out-dir/new.txt", "/out-rel/new.txt"):
        with pytest.raises(Escape):
            st.open_write(vpath)
        with pytest.raises(Escape):
            st.mkdir(vpath)
        with pytest.raises(Escape):
            st.rename("/f.txt", vpath)
    with pytest.raises(Escape):
        st.remove("/out-dir/secret")
    with pytest.raises(Escape):
        list(st.listdir("/out-dir"))
    assert os.listdir(outside) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"


def test_loops_missing_names_and_non_directories(tree: tuple[Path, Path],
                                                 resolution: str) -> None:
    home, _ = tree
    st = LocalStorage(str(home))
    with pytest.raises(StorageError, match="too many levels of symbolic links"):
        st.open_read("/loop-a")
    with pytest.raises(StorageError, match="too many levels of symbolic links"):
        st.open_read("/loop-a/x/y")
    with pytest.raises(StorageError, match="no such file"):
        st.open_read("/dangling")
    with pytest.raises(StorageError, match="no such file"):
        st.open_read("/d/nope/x")
    with pytest.raises(StorageError, match="not a directory"):
        st.open_read("/f.txt/x")
    with pytest.raises(StorageError, match="not a regular file"):
        st.open_read("/rel-dir")
    with pytest.raises(NotAllowed):
        st.open_read("/d/.natftp-upload-x.part")
    # the link entries themselves: listed only when they lead somewhere inside
    names = [f.name for f in st.listdir("/")]
    assert names == ["abs-dir", "d", "dotdot-in", "f.txt", "home-itself", "rel-dir"]


def test_changes_act_on_the_name_itself(tree: tuple[Path, Path], resolution: str) -> None:
    home, outside = tree
    st = LocalStorage(str(home))
    st.mkdir("/rel-dir/new")  # a directory on the way: followed (it stays inside)
    assert (home / "d" / "e" / "new").is_dir()
    st.rmdir("/abs-dir/e/new")
    st.rename("/out-file", "/d/moved-link")  # renames the link, not the outside file
    assert os.readlink(home / "d" / "moved-link") == str(outside / "secret")
    st.remove("/d/moved-link")
    assert (outside / "secret").exists()
    st.chmod("/rel-dir/g.txt", 0o4751)  # a directory link on the way is followed
    assert stat.S_IMODE((home / "d" / "e" / "g.txt").stat().st_mode) == 0o751
    with pytest.raises(StorageError, match="symbolic link"):
        st.chmod("/dotdot-in", 0o600)  # the name itself: never its target
    st.set_mtime("/dotdot-in", 1_000_000_000)  # MFMT through an inside link: the target
    assert (home / "f.txt").stat().st_mtime == 1_000_000_000
    up = st.open_write("/rel-dir/up.bin")
    os.write(up.fd, b"uploaded")
    up.commit()
    assert (home / "d" / "e" / "up.bin").read_bytes() == b"uploaded"


def test_chmod_and_utime_race_never_reach_outside(tmp_path: Path) -> None:
    """The operations behind SITE CHMOD and MFMT, in a thread, while another process
    swaps a directory with a symlink to an outside one."""
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "racedir").mkdir(parents=True)
    (home / "racedir" / "f").write_bytes(b"inside")
    outside.mkdir()
    (outside / "f").write_bytes(b"outside")
    os.chmod(outside / "f", 0o640)
    os.utime(outside / "f", (1_000_000, 1_000_000))
    os.symlink(outside, home / "racelink")
    st = LocalStorage(str(home))
    stop = threading.Event()
    counts = {"ok": 0, "escape": 0, "other": 0}

    def hammer() -> None:
        while not stop.is_set():
            for op in (lambda: st.chmod("/racedir/f", 0o600),
                       lambda: st.set_mtime("/racedir/f", 2_000_000),
                       lambda: st.stat("/racedir/f"), lambda: read(st, "/racedir/f")):
                try:
                    got = op()
                except Escape:
                    counts["escape"] += 1
                    continue
                except StorageError:
                    counts["other"] += 1
                    continue
                assert got != b"outside"
                counts["ok"] += 1

    swapper = Swapper(home / "racedir", home / "racelink", 5.0)
    t = threading.Thread(target=hammer)
    t.start()
    try:
        swapper.stop()
    finally:
        stop.set()
        t.join(30)
        swapper.kill()
    o = (outside / "f").stat()
    assert stat.S_IMODE(o.st_mode) == 0o640 and o.st_mtime == 1_000_000
    assert counts["ok"] > 100 and counts["escape"] > 100, counts
