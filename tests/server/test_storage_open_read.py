"""LocalStorage.open_read: the no-symlink fast path and the real-path fallback agree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from natftp.storage.local import Escape, LocalStorage, StorageError


def _read(st: LocalStorage, vpath: str) -> bytes:
    fd, size = st.open_read(vpath)
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def test_open_read_paths(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "d" / "e").mkdir(parents=True)
    outside.mkdir()
    (home / "f.txt").write_bytes(b"top")
    (home / "d" / "e" / "g.txt").write_bytes(b"deep")
    (outside / "secret").write_bytes(b"secret")
    os.symlink(outside, home / "out-dir")
    os.symlink(outside / "secret", home / "out-file")
    os.symlink("d", home / "in-dir")
    os.symlink(home / "f.txt", home / "abs-in-file")
    st = LocalStorage(str(home))
    assert _read(st, "/f.txt") == b"top"
    assert _read(st, "/d/e/g.txt") == b"deep"
    assert _read(st, "/in-dir/e/g.txt") == b"deep"  # a symlink that stays inside
    assert _read(st, "/abs-in-file") == b"top"
    with pytest.raises(Escape):
        st.open_read("/out-file")
    with pytest.raises(Escape):
        st.open_read("/out-dir/secret")
    with pytest.raises(StorageError, match="no such file"):
        st.open_read("/missing")
    with pytest.raises(StorageError, match="not a regular file"):
        st.open_read("/d")
