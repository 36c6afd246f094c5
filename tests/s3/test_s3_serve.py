"""natftp serve --storage s3://... against rclone serve s3 on loopback, driven by real
clients (curl, lftp, ftplib, natftp's own), every file checked by SHA-256 and in the
bucket itself (rclone keeps each object as a plain file: what S3 holds is on disk)."""

from __future__ import annotations

import ftplib
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3tools import BUCKET, RcloneS3, start_rclone, tmpfs_dir
from servertools import PASSWORD, USER, Running, start_server

JAPANESE = "進捗どうですか"


@pytest.fixture(scope="module")
def objects() -> Iterator[RcloneS3]:
    """rclone serve s3 with its data on tmpfs (the 1 GiB tests write there)."""
    d = tmpfs_dir("serve")
    srv = start_rclone(d / "data")
    yield srv
    srv.stop()
    subprocess.run(["rm", "-rf", str(d)], check=False)


def serve(tmp: Path, srv: RcloneS3, prefix: str, *, bucket: str = BUCKET,
          env: dict[str, str] | None = None, expect_fail: bool = False) -> Running:
    return start_server(tmp, args=["--storage", f"s3://{bucket}/{prefix}",
                                   "--s3-endpoint", srv.endpoint, "-v"],
                        env={**srv.env(), **(env or {})}, expect_fail=expect_fail)


def ftp(r: Running) -> ftplib.FTP:
    f = ftplib.FTP()
    f.connect(r.host, r.port, timeout=60)
    f.login(r.user, r.password)
    return f


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_curl_ftplib_and_natftp_client_round_trips(objects: RcloneS3, tmp_path: Path) -> None:
    r = serve(tmp_path, objects, "rt")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(20 << 20))  # three parts of a multipart upload
    url = r.url("a/curl.bin")
    subprocess.run(["curl", "-sS", "--ftp-create-dirs", "-T", str(src), url], check=True,
                   timeout=120)
    got = subprocess.run(["curl", "-sS", url], check=True, capture_output=True,
                         timeout=120).stdout
    assert sha(got) == sha(src.read_bytes())
    assert (objects.bucket_dir() / "rt/a/curl.bin").read_bytes() == src.read_bytes()

    with ftp(r) as f:
        f.storbinary(f"STOR {JAPANESE}.txt", open(src, "rb"))
        buf = bytearray()
        f.retrbinary(f"RETR {JAPANESE}.txt", buf.extend)
        assert sha(bytes(buf)) == sha(src.read_bytes())
        tail = bytearray()
        f.retrbinary(f"RETR {JAPANESE}.txt", tail.extend, rest=(20 << 20) - 1000)
        assert bytes(tail) == src.read_bytes()[-1000:]  # REST + RETR: a ranged GET
        assert f.size(f"{JAPANESE}.txt") == 20 << 20
        assert f.sendcmd(f"MDTM {JAPANESE}.txt").startswith("213 ")
        assert sorted(f.nlst()) == sorted(["a", f"{JAPANESE}.txt"])

    cli = [sys.executable, "-m", "natftp"]
    subprocess.run([*cli, "put", str(src), r.url("b/natftp.bin")], check=True, timeout=120,
                   capture_output=True)
    out = tmp_path / "back.bin"
    subprocess.run([*cli, "get", r.url("b/natftp.bin"), str(out)], check=True, timeout=120,
                   capture_output=True)
    assert sha(out.read_bytes()) == sha(src.read_bytes())


def test_lftp_mirror_both_ways_with_japanese_names(objects: RcloneS3, tmp_path: Path) -> None:
    r = serve(tmp_path, objects, "mirror")
    tree = tmp_path / "tree"
    (tree / f"{JAPANESE}/深い").mkdir(parents=True)
    files = {f"{JAPANESE}/ファイル.txt": b"jp" * 1000, f"{JAPANESE}/深い/x.bin":
             os.urandom(9 << 20), "top.txt": b"top"}
    for name, body in files.items():
        (tree / name).write_bytes(body)
    back = tmp_path / "back"
    script = (f"set net:max-retries 1; set net:timeout 30; set ftp:ssl-allow no; "
              f"open -u {r.user},'{r.password}' -p {r.port} {r.host}; "
              f"mirror -R {tree} /up; mirror /up {back}; bye")
    p = subprocess.run(["lftp", "-c", script], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr + r.log
    for name, body in files.items():
        assert sha((back / name).read_bytes()) == sha(body), name
        assert (objects.bucket_dir() / "mirror/up" / name).read_bytes() == body


def test_append_rest_store_and_mfmt_are_refused_naming_object_storage(
        objects: RcloneS3, tmp_path: Path) -> None:
    r = serve(tmp_path, objects, "refuse")
    with ftp(r) as f:
        f.storbinary("STOR f.txt", _reader(b"12345"))
        with pytest.raises(ftplib.error_perm, match="550 .*object storage cannot append"):
            f.storbinary("APPE f.txt", _reader(b"678"))
        with pytest.raises(ftplib.error_perm, match="550 .*object storage cannot append"):
            f.storbinary("STOR f.txt", _reader(b"678"), rest=5)
        with pytest.raises(ftplib.error_perm, match="550 .*cannot be set"):
            f.sendcmd("MFMT 20200101000000 f.txt")
        with pytest.raises(ftplib.error_perm, match="550 .*no such file"):
            f.delete("missing.txt")
        with pytest.raises(ftplib.error_perm, match="550 .*not empty"):
            f.storbinary("STOR d/x", _reader(b"x"))
            f.rmd("d")
        f.rename("f.txt", "g.txt")
        assert sorted(f.nlst()) == ["d", "g.txt"]
    assert (objects.bucket_dir() / "refuse/g.txt").read_bytes() == b"12345"
    assert "copied, then deleted" in r.log


def _reader(data: bytes):  # type: ignore[no-untyped-def]
    import io
    return io.BytesIO(data)


def test_start_checks_the_bucket_and_exits_2_with_the_fix(objects: RcloneS3,
                                                          tmp_path: Path) -> None:
    r = serve(tmp_path, objects, "", bucket="no-such-bucket", expect_fail=True)
    assert r.proc.returncode == 2
    assert "does not exist" in r.log and "fix: create the bucket" in r.log
    r = serve(tmp_path, objects, "", env={"AWS_SECRET_ACCESS_KEY": "wrong"},
              expect_fail=True)
    assert r.proc.returncode == 2
    assert "refused the server's S3 credentials" in r.log and "AWS_ACCESS_KEY_ID" in r.log
    assert "wrong" not in r.log  # the secret is never printed


def _rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_one_gib_stor_and_retr_keep_the_server_memory_flat(objects: RcloneS3,
                                                           tmp_path: Path) -> None:
    r = serve(tmp_path, objects, "big")
    with ftp(r) as f:
        f.storbinary("STOR warm.bin", _reader(os.urandom(20 << 20)))  # imports, pools
        before = _rss_peak_mib(r.proc.pid)
        block = os.urandom(1 << 20)
        h = hashlib.sha256()
        f.voidcmd("TYPE I")
        with f.transfercmd("STOR one.bin") as conn:
            for i in range(1024):
                chunk = block[i % 7:] + block[:i % 7]  # no two MiB alike
                h.update(chunk)
                conn.sendall(chunk)
        f.voidresp()
        back = hashlib.sha256()
        n = 0

        def take(b: bytes) -> None:
            nonlocal n
            back.update(b)
            n += len(b)
        f.retrbinary("RETR one.bin", take, blocksize=1 << 20)
        assert n == 1 << 30 and back.hexdigest() == h.hexdigest()
        grown = _rss_peak_mib(r.proc.pid) - before
    # parts of 8 MiB, at most 3 held at once, plus the library's buffers: never the file
    assert grown < 120, f"server peak RSS grew by {grown:.0f} MiB for 1 GiB"


def test_kill_9_mid_stor_leaves_no_object_and_the_old_one_intact(objects: RcloneS3,
                                                                 tmp_path: Path) -> None:
    r = serve(tmp_path, objects, "kill")
    with ftp(r) as f:
        f.storbinary("STOR keep.bin", _reader(b"the old contents"))
        f.voidcmd("TYPE I")
        conn = f.transfercmd("STOR keep.bin")
        for _ in range(24):  # 24 MiB: parts are on their way to the service
            conn.sendall(os.urandom(1 << 20))
        # sendall returned: the server holds at most its socket buffer, so two full
        # 8 MiB parts went to the service as a multipart upload before the kill
        os.kill(r.proc.pid, signal.SIGKILL)
        r.proc.wait(10)
        conn.close()
    r2 = serve(tmp_path, objects, "kill")
    with ftp(r2) as f:
        buf = bytearray()
        f.retrbinary("RETR keep.bin", buf.extend)
        assert bytes(buf) == b"the old contents"
        assert f.nlst() == ["keep.bin"]
    visible = [p.name for p in (objects.bucket_dir() / "kill").iterdir()]
    assert visible == ["keep.bin"] or all(n == "keep.bin" or n.startswith(".")
                                          for n in visible)


def test_listing_of_10000_objects_is_paged_and_complete(tmp_path: Path) -> None:
    root = tmpfs_dir("many") / "data"
    many = root / BUCKET / "many"
    many.mkdir(parents=True)
    names = [f"object-{i:05d}-{JAPANESE}.bin" for i in range(10000)]
    for n in names:
        (many / n).write_bytes(b"x")
    srv = start_rclone(root, extra=["-vv"])
    try:
        r = serve(tmp_path, srv, "")
        with ftp(r) as f:
            got = f.nlst("many")
            lines: list[str] = []
            f.retrlines("LIST many", lines.append)
            facts: list[str] = []
            f.retrlines("MLSD many", facts.append)
        assert sorted(got) == sorted(f"many/{n}" for n in names)
        assert len(lines) == 10000 and all(line.startswith("-rw-") for line in lines)
        assert len(facts) == 10000 and all("type=file;size=1;" in x for x in facts)
        # ListObjectsV2 pages of 1,000: the service was asked page by page
        assert srv.log.count("LIST BUCKET") >= 30 or srv.log.count("continuation") >= 9
    finally:
        srv.stop()
        subprocess.run(["rm", "-rf", str(root.parent)], check=False)


def test_user_homes_are_prefixes(objects: RcloneS3, tmp_path: Path) -> None:
    from argon2 import PasswordHasher

    h = PasswordHasher().hash(PASSWORD)
    config = f"""
[storage]
backend = "s3"
s3.bucket = "{BUCKET}"
s3.prefix = "homes"
s3.endpoint = "{objects.endpoint}"

[[users]]
name = "bob"
password_hash = "{h}"
home = "bob"
"""
    r = start_server(tmp_path, config=config, users=True, env=objects.env())
    with ftp(r) as f:
        f.storbinary("STOR alice.txt", _reader(b"a"))
    f2 = ftplib.FTP()
    f2.connect(r.host, r.port, timeout=30)
    f2.login("bob", PASSWORD)
    f2.storbinary("STOR bob.txt", _reader(b"b"))
    assert f2.nlst() == ["bob.txt"]
    f2.quit()
    assert (objects.bucket_dir() / "homes/bob/bob.txt").read_bytes() == b"b"
    assert (objects.bucket_dir() / "homes/alice.txt").read_bytes() == b"a"
    assert USER == "alice"  # the --user start_server adds: home "" (s3.prefix itself)
