"""Issue 21 item 9: a full disk answers 452 (RFC 959 "insufficient storage space"),
logged at WARNING, and every failed upload is rolled back to where it was before the
command, so it does not leave the disk full.

The server serves a 2 MiB tmpfs that the test mounts (root) and unmounts afterwards.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.ftpraw import Ctl
from support.servertools import Running

SIZE = 2 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755",
                        "natftp-test-full", str(mnt)], capture_output=True, text=True)
    assert p.returncode == 0, f"mounting a tmpfs needs root: {p.stderr}"
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def used(mnt: Path) -> int:
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def upload(c: Ctl, verb: str, name: str, data: bytes) -> tuple[int, str]:
    d = c.epsv_data()
    r = c.cmd(f"{verb} {name}")
    assert r.code == 150, r
    try:
        d.sendall(data)
    except OSError:
        pass  # the server gave up on a full disk and closed the data connection
    d.close()
    r = c.read()
    return r.code, r.text


def test_full_disk_gets_452_logged_and_every_upload_rolled_back(
        natftp_server: Callable[..., Running], small_disk: Path) -> None:
    r = natftp_server(root=small_disk)
    (small_disk / "keep.bin").write_bytes(b"k" * 300_000)
    (small_disk / "append.bin").write_bytes(b"a" * 200_000)
    (small_disk / "resume.bin").write_bytes(b"r" * 100_000)
    baseline = used(small_disk)
    too_big = os.urandom(3 << 20)
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        # a new upload, a replacement, an append, a restart in place
        for verb, name in (("STOR", "new.bin"), ("STOR", "keep.bin"), ("APPE", "append.bin"),
                           ("REST 50000", "resume.bin")):
            if verb.startswith("REST"):
                assert c.cmd(verb).code == 350
                verb = "STOR"
            code, text = upload(c, verb, name, too_big)
            assert code == 452, (verb, name, code, text)
            assert "No space left on device" in text and "rolled back" in text
            assert c.cmd("NOOP").code == 200
        # the space is free again: a file that fits goes in
        code, _ = upload(c, "STOR", "fits.bin", b"f" * 500_000)
        assert code == 226
    assert not (small_disk / "new.bin").exists()
    assert (small_disk / "keep.bin").read_bytes() == b"k" * 300_000
    assert (small_disk / "append.bin").read_bytes() == b"a" * 200_000
    assert os.path.getsize(small_disk / "resume.bin") == 100_000
    assert sorted(p.name for p in small_disk.iterdir()) == [
        "append.bin", "fits.bin", "keep.bin", "resume.bin"]
    assert used(small_disk) <= baseline + 600_000
    warnings = [ln for ln in r.log.splitlines() if " WARNING " in ln and "452" in ln]
    assert len(warnings) == 4, r.log


def test_a_resumed_upload_that_fills_the_disk_goes_back_to_its_size_before(
        natftp_server: Callable[..., Running], small_disk: Path) -> None:
    r = natftp_server(root=small_disk)
    part = small_disk / ".natftp-upload-big.bin.part"
    part.write_bytes(b"p" * 400_000)
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("SIZE big.bin").text == "400000"
        code, _ = upload(c, "APPE", "big.bin", os.urandom(3 << 20))
        assert code == 452
        assert c.cmd("SIZE big.bin").text == "400000"  # still resumable from there
    assert part.read_bytes() == b"p" * 400_000
    assert not (small_disk / "big.bin").exists()


def test_no_inode_left_gets_452_at_stor(natftp_server: Callable[..., Running],
                                        tmp_path: Path) -> None:
    """A full inode table refuses the upload file's creation: 452 before the 150."""
    mnt = tmp_path / "few"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=4,mode=0755",
                    "natftp-test-inodes", str(mnt)], check=True)
    try:
        n = 0
        while True:
            try:
                (mnt / f"f{n}").write_bytes(b"")
            except OSError:
                break
            n += 1
        r = natftp_server(root=mnt)
        with Ctl(r.host, r.port) as c:
            c.login(r.user, r.password)
            d = c.epsv_data()
            reply = c.cmd("STOR one-more.bin")
            d.close()
            assert reply.code == 452 and "no space left" in reply.text.lower(), reply
            assert c.cmd("MKD dir").code == 452
        assert " WARNING " in r.log
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
