"""Benchmark: a 1 GiB RETR through `natftp gateway` versus straight from the server.

    .venv/bin/python bench/gateway_bench.py [--size-mib 1024] [--server vsftpd|pyftpdlib]

Starts a real server on loopback (tests/support/peers.py: vsftpd by default, needs root and
scripts/setup-system.sh), then the gateway in front of it twice (os.splice relay, and
--no-zero-copy buffer copy). For each path curl (EPSV) downloads the file once into
sha256sum (it must match), then best of N into /dev/null for the figure. Prints MB/s per
path and the gateway/direct ratio. Not part of the test suite; loopback numbers show the
gateway's CPU cost, not a network's.

The gateway figure in `make bench`'s table comes from bench/run.py's ``gateway`` benchmark
(natftp upstream, the shared pinned load generator); this script stays as the check that
relayed bytes are identical (sha256), with curl as the client.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "gateway"))

from gwrun import gateway  # noqa: E402

from support.peers import peer_server  # noqa: E402


def make_file(path: Path, size: int) -> str:
    """Write ``size`` bytes of non-repeating data; return its sha256."""
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(size >> 20):
            chunk = hashlib.sha256(i.to_bytes(8, "big")).digest() + block[32:]
            f.write(chunk)
            h.update(chunk)
    os.chmod(path, 0o644)
    return h.hexdigest()


def timed(url: str) -> float:
    """Download to /dev/null (the throughput figure: no hashing on the client's CPU)."""
    t0 = time.monotonic()
    subprocess.run(["curl", "-sS", "--max-time", "600", "-o", "/dev/null", url], check=True,
                   timeout=700)
    return time.monotonic() - t0


def fetch(url: str) -> tuple[float, str]:
    t0 = time.monotonic()
    curl = subprocess.Popen(["curl", "-sS", "--max-time", "600", url],
                            stdout=subprocess.PIPE)
    assert curl.stdout is not None
    r = subprocess.run(["sha256sum"], stdin=curl.stdout, capture_output=True, text=True,
                       timeout=700)
    curl.stdout.close()
    if curl.wait(timeout=700) != 0:
        raise SystemExit(f"curl failed for {url}")
    return time.monotonic() - t0, r.stdout.split()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--server", default="vsftpd", choices=["vsftpd", "pyftpdlib"])
    ap.add_argument("--runs", type=int, default=2, help="best of N per path")
    a = ap.parse_args()
    size = a.size_mib << 20
    with peer_server(a.server) as peer:
        print(f"writing {a.size_mib} MiB into {peer.root} ...", flush=True)
        sha = make_file(peer.root / "big.bin", size)
        results: dict[str, float] = {}

        def run(name: str, host: str, port: int) -> None:
            url = f"ftp://{peer.user}:{peer.password}@{host}:{port}/big.bin"
            _, got = fetch(url)  # byte-identical?
            if got != sha:
                raise SystemExit(f"{name}: sha256 mismatch ({got} != {sha})")
            best = min(timed(url) for _ in range(a.runs))
            results[name] = size / best / 1e6
            print(f"{name:<28} {results[name]:8.0f} MB/s  ({best:.2f} s, sha256 ok)",
                  flush=True)

        run(f"direct ({a.server})", peer.host, peer.port)
        with gateway((peer.host, peer.port)) as gw:
            run("gateway splice", gw.host, gw.port)
        with gateway((peer.host, peer.port), args=["--no-zero-copy"]) as gw:
            run("gateway copy", gw.host, gw.port)
        direct = results[f"direct ({a.server})"]
        for k in ("gateway splice", "gateway copy"):
            print(f"ratio {k} / direct: {results[k] / direct:.2f}")
        (peer.root / "big.bin").unlink()


if __name__ == "__main__":
    main()
