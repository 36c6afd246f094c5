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
import time
from pathlib import Path

import pytest
from s3tools import BUCKET, STARTED, RcloneS3, ftp, serve, start_rclone, tmpfs_dir

from support.servertools import PASSWORD, USER, start_server

JAPANESE = "進捗どうですか"


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
    """With no kept upload, an object cannot be written into (APPE, REST+STOR); the
    rules shared with the disk hold: REST+STOR in TYPE A, reserved names, MLSD of a
    file; SIZE in TYPE A counts the CR LF the transfer would send."""
    r = serve(tmp_path, objects, "refuse")
    with ftp(r) as f:
        f.storbinary("STOR f.txt", _reader(b"12345"))
        with pytest.raises(ftplib.error_perm, match="550 .*object storage cannot append"):
            f.storbinary("APPE f.txt", _reader(b"678"))
        with pytest.raises(ftplib.error_perm, match="550 .*object storage cannot append"):
            f.storbinary("STOR f.txt", _reader(b"678"), rest=5)
        with pytest.raises(ftplib.error_perm, match="554 .*nothing to resume"):
            f.storbinary("STOR missing.txt", _reader(b"678"), rest=5)
        f.storbinary("STOR lines.txt", _reader(b"one\ntwo\n"))
        f.voidcmd("TYPE A")
        assert f.sendcmd("SIZE lines.txt") == "213 10"
        with pytest.raises(ftplib.error_perm, match="554 .*TYPE A cannot be resumed"):
            f.ntransfercmd("STOR lines.txt", rest=4)
        f.voidcmd("TYPE I")
        assert f.sendcmd("SIZE lines.txt") == "213 8"
        with pytest.raises(ftplib.error_perm, match="553 .*reserved for uploads"):
            f.storbinary("STOR .natftp-upload-x.part", _reader(b"x"))
        with pytest.raises(ftplib.error_perm, match="501 .*not a directory"):
            f.retrlines("MLSD f.txt", print)
        f.delete("lines.txt")
        with pytest.raises(ftplib.error_perm, match="550 .*cannot be set"):
            f.sendcmd("MFMT 20200101000000 f.txt")
        with pytest.raises(ftplib.error_perm, match="550 .*keeps no permission bits"):
            f.sendcmd("SITE CHMOD 600 f.txt")
        with pytest.raises(ftplib.error_perm, match="550 .*no such file"):
            f.delete("missing.txt")
        with pytest.raises(ftplib.error_perm, match="550 .*not empty"):
            f.storbinary("STOR d/x", _reader(b"x"))
            f.rmd("d")
        # a directory's name is not a file's (asked while the data arrives)
        with pytest.raises(ftplib.error_temp, match="426 .*/d is a directory"):
            f.storbinary("STOR d", _reader(b"y"))
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


#: objects in the big prefix, and their names (long: each MLSD line is ~350 bytes, so a
#: page of 1,000 is ~350 KB and the listing is bigger than the kernel can buffer)
MANY = 18_000
LONG = "x" * 200


def _pages_asked(srv: RcloneS3, prefix: str) -> int:
    """ListObjectsV2 pages the service was asked for (rclone -vv logs each)."""
    return srv.log.count(f'prefix:"{prefix}", delim:"/"')


def test_listing_of_18000_objects_is_streamed_paged_and_complete(tmp_path: Path) -> None:
    """A prefix of 18,000 objects (18 ListObjectsV2 pages): the first MLSD lines reach a
    client that reads nothing more before the last page is fetched, and while it reads
    nothing, no more pages are fetched than the kernel's socket buffers can hold lines
    of (the server waits for the client before it asks the service); then the listing
    is complete, each name once. (LIST and NLST stream the same way: one
    ObjectListing.)"""
    import socket

    from natftp.proto.addr import parse_229
    from natftp.storage.s3 import PAGE

    from support.ftpraw import Ctl

    root = tmpfs_dir("many") / "data"
    many = root / BUCKET / "many"
    many.mkdir(parents=True)
    names = [f"object-{i:05d}-{LONG}-{JAPANESE}.bin" for i in range(MANY)]
    for n in names:
        (many / n).write_bytes(b"x")
    srv = start_rclone(root, extra=["-vv"])
    pages = -(-MANY // PAGE)
    try:
        r = serve(tmp_path, srv, "")
        c = Ctl(r.host, r.port, timeout=120)
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        dport = parse_229(c.cmd("EPSV").text)
        data = socket.socket()
        data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        data.settimeout(120)
        data.connect((r.host, dport))
        assert c.cmd("MLSD many").code == 150
        got = bytearray(data.recv(4096))
        assert got.startswith(b"type=file;size=1;")
        asked = _pages_asked(srv, "many/")
        # a listing gathered before it is sent would have asked for all of them by now
        assert 1 <= asked < pages, asked
        # the bound that holds whenever the client has read nothing more: the pages
        # whose lines fit in the server's largest send buffer and the client's receive
        # buffer, the one being read and the one after it
        wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        page_bytes = sum(len(n.encode()) + 80 for n in names[:PAGE])  # MLSD line >= this
        bound = -(-(wmem_max + (64 << 10)) // page_bytes) + 2
        assert bound < pages  # the test can tell streaming from gathering
        assert _pages_asked(srv, "many/") <= bound
        while b := data.recv(1 << 20):
            got += b
        data.close()
        assert c.read().code == 226
        c.close()
        facts = got.decode().split("\r\n")[:-1]
        assert len(facts) == MANY and all("type=file;size=1;" in x for x in facts)
        assert sorted(x.split("; ", 1)[1] for x in facts) == sorted(names)
        assert _pages_asked(srv, "many/") == pages  # each page once, none gathered twice
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
    STARTED.append(r)
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


def test_data_that_ends_after_the_client_is_gone_is_not_an_object(
        objects: RcloneS3, tmp_path: Path) -> None:
    """Stream mode's trap: a killed client's data connection ends with a normal FIN,
    just like a complete upload. Here both connections of a client end while the server
    is stopped, the data connection first: when the server runs again, the end of the
    data comes first, and the control connection is already closed. The upload must not
    become the object (the old one stays; what arrived in whole parts is kept)."""
    from support.ftpraw import Ctl

    r = serve(tmp_path, objects, "gone")
    with ftp(r) as f:
        f.storbinary("STOR f.bin", _reader(b"the old contents"))
    for size in (1 << 20, 9 << 20):  # one PUT; a multipart upload
        c = Ctl(r.host, r.port, timeout=60)
        c.login(r.user, r.password)
        assert c.cmd("TYPE I").code == 200
        d = c.epsv_data()
        assert c.cmd("STOR f.bin").code == 150
        d.sendall(os.urandom(size))
        deadline = time.monotonic() + 60
        while f"{size} bytes so far" not in c.cmd("STAT").text:
            assert time.monotonic() < deadline, "the server did not receive the data"
            time.sleep(0.05)
        r.proc.send_signal(signal.SIGSTOP)
        try:
            d.close()
            c.close()
        finally:
            r.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 60
        while r.log.count("refused 426 STOR /f.bin") < (1 if size == 1 << 20 else 2):
            assert time.monotonic() < deadline, r.log[-2000:]
            time.sleep(0.05)
        assert (objects.bucket_dir() / "gone/f.bin").read_bytes() == b"the old contents"
    assert "] STOR /f.bin: 16 bytes" in r.log and r.log.count("] STOR /f.bin:") == 1
