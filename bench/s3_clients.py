"""Which async S3 client library natftp's object-storage backend uses: measured, not guessed.

    .venv/bin/python bench/s3_clients.py                 # 1 GiB large objects, 300 small
    .venv/bin/python bench/s3_clients.py --size-mib 256 --small 100 --runs 1   # quick

Starts ``rclone serve s3`` on 127.0.0.1 (SigV4, its data on tmpfs, pinned to core 0) and
runs, for each library, in a fresh Python process pinned to core 1 (so its peak RSS is its
own):

- **PUT large**: ``--size-mib`` MiB arriving in 1 MiB pieces (as an FTP upload arrives from
  its data connection), sent as a multipart upload with 8 MiB parts, at most 2 in flight
  (the backend's setting: memory stays ~2 parts);
- **GET large**: the same object streamed back and dropped, 1 MiB pieces;
- **small**: ``--small`` rounds of PUT, HEAD and GET of a 4 KiB object, one after the
  other; the median latency of each.

For each: MB/s, the client's CPU seconds (user+sys of its process, all threads: obstore's
Rust runtime counts), the server's CPU seconds, and the client's peak RSS.

Both libraries talk plain HTTP to loopback. aiobotocore then signs every payload (SHA-256
of each part: botocore always does over http; over https S3 takes UNSIGNED-PAYLOAD), and
obstore does not (it sends UNSIGNED-PAYLOAD); the table says so, and ``--boto-unsigned``
measures aiobotocore without it, to see what that costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "s3"))
sys.path.insert(0, str(HERE.parent / "tests"))  # s3tools uses tests/support

import s3tools  # noqa: E402

PART = 8 << 20
PIECE = 1 << 20
CONCURRENCY = 2
LIBS = ("aiobotocore", "obstore", "miniopy-async")
#: the prefix with ``--listed`` objects (made on disk before rclone starts)
LISTED = "many"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _server_cpu(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


async def _pieces(total: int) -> AsyncIterator[bytes]:
    block = os.urandom(PIECE)
    sent = 0
    while sent < total:
        n = min(PIECE, total - sent)
        yield block[:n]
        sent += n
        await asyncio.sleep(0)


# -- aiobotocore ---------------------------------------------------------------------------

T = TypeVar("T")

async def _multipart(size: int, send: Callable[[int, bytes], Awaitable[T]]) -> list[T]:
    """natftp's STOR as a multipart upload: ``size`` bytes arriving in 1 MiB pieces, cut
    into PART-sized parts (the last one shorter; one empty part for an empty object),
    ``send(number, body)`` for each with CONCURRENCY in flight; the results in part
    order."""
    sem = asyncio.Semaphore(CONCURRENCY)
    tasks: list[asyncio.Task[T]] = []

    async def one(n: int, body: bytes) -> T:
        try:
            return await send(n, body)
        finally:
            sem.release()

    async def start(body: bytes) -> None:
        await sem.acquire()
        tasks.append(asyncio.create_task(one(len(tasks) + 1, body)))

    buf = bytearray()
    async for piece in _pieces(size):
        buf += piece
        if len(buf) >= PART:
            await start(bytes(buf))
            buf.clear()
    if buf or not tasks:
        await start(bytes(buf))
    return list(await asyncio.gather(*tasks))


def _boto_client(ep: str, unsigned: bool) -> Any:
    from aiobotocore.session import get_session
    from botocore.config import Config

    cfg = Config(response_checksum_validation="when_required",
                 request_checksum_calculation="when_required",
                 s3={"addressing_style": "path", "payload_signing_enabled": not unsigned},
                 max_pool_connections=8)
    return get_session().create_client(
        "s3", endpoint_url=ep, region_name="us-east-1", config=cfg,
        aws_access_key_id=s3tools.ACCESS_KEY, aws_secret_access_key=s3tools.SECRET_KEY)


def _boto_unsigned_payload(c: Any) -> None:
    """Over http botocore signs the payload whatever the config says: take its https
    path (UNSIGNED-PAYLOAD) for the ``--boto-unsigned`` variant."""
    from botocore.auth import S3SigV4Auth

    def never(self: Any, request: Any) -> bool:
        return False
    S3SigV4Auth._should_sha256_sign_payload = never  # type: ignore[method-assign]


async def boto_op(op: str, ep: str, key: str, size: int, small: int, unsigned: bool,
                  ) -> dict[str, Any]:
    async with _boto_client(ep, unsigned) as c:
        if unsigned:
            _boto_unsigned_payload(c)
        b = s3tools.BUCKET
        if op == "put":
            up = await c.create_multipart_upload(Bucket=b, Key=key)
            uid = up["UploadId"]

            async def send(n: int, body: bytes) -> dict[str, Any]:
                r = await c.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=n,
                                        Body=body)
                return {"PartNumber": n, "ETag": r["ETag"]}
            parts = await _multipart(size, send)
            await c.complete_multipart_upload(Bucket=b, Key=key, UploadId=uid,
                                              MultipartUpload={"Parts": parts})
            return {"bytes": size}
        if op == "get":
            r = await c.get_object(Bucket=b, Key=key)
            got = 0
            async for chunk in r["Body"].iter_chunks(PIECE):
                got += len(chunk)
            return {"bytes": got}
        if op == "list":
            t0 = time.perf_counter()
            first = None
            n = 0
            pages = c.get_paginator("list_objects_v2").paginate(
                Bucket=b, Prefix=f"{LISTED}/", Delimiter="/")
            async for page in pages:
                n += len(page.get("Contents", ()))
                if first is None:
                    first = time.perf_counter() - t0
            return {"entries": n, "first": first}
        lat: dict[str, list[float]] = {"put": [], "head": [], "get": []}
        body = os.urandom(4096)
        for i in range(small):
            k = f"small/{i}"
            t = time.perf_counter()
            await c.put_object(Bucket=b, Key=k, Body=body)
            lat["put"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await c.head_object(Bucket=b, Key=k)
            lat["head"].append(time.perf_counter() - t)
            t = time.perf_counter()
            r = await c.get_object(Bucket=b, Key=k)
            assert len(await r["Body"].read()) == 4096
            lat["get"].append(time.perf_counter() - t)
        return {"latency": lat}


# -- obstore -----------------------------------------------------------------------------

async def obstore_op(op: str, ep: str, key: str, size: int, small: int, unsigned: bool,
                     ) -> dict[str, Any]:
    import obstore
    from obstore.store import S3Store

    st = S3Store(s3tools.BUCKET, endpoint=ep, region="us-east-1",
                 access_key_id=s3tools.ACCESS_KEY, secret_access_key=s3tools.SECRET_KEY,
                 virtual_hosted_style_request=False, client_options={"allow_http": True})
    if op == "put":
        await obstore.put_async(st, key, _pieces(size), chunk_size=PART,
                                max_concurrency=CONCURRENCY)
        return {"bytes": size}
    if op == "get":
        r = await obstore.get_async(st, key)
        got = 0
        async for chunk in r.stream(min_chunk_size=PIECE):
            got += len(chunk)
        return {"bytes": got}
    if op == "list":
        t0 = time.perf_counter()
        res = await obstore.list_with_delimiter_async(st, LISTED)
        return {"entries": len(res["objects"]), "first": time.perf_counter() - t0}
    lat: dict[str, list[float]] = {"put": [], "head": [], "get": []}
    body = os.urandom(4096)
    for i in range(small):
        k = f"small/o{i}"
        t = time.perf_counter()
        await obstore.put_async(st, k, body)
        lat["put"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await obstore.head_async(st, k)
        lat["head"].append(time.perf_counter() - t)
        t = time.perf_counter()
        r = await obstore.get_async(st, k)
        assert len(await r.bytes_async()) == 4096
        lat["get"].append(time.perf_counter() - t)
    return {"latency": lat}


# -- miniopy-async ----------------------------------------------------------------------

async def minio_op(op: str, ep: str, key: str, size: int, small: int, unsigned: bool,
                   ) -> dict[str, Any]:
    import io

    from miniopy_async import Minio

    b = s3tools.BUCKET
    async with Minio(ep.split("//", 1)[1], access_key=s3tools.ACCESS_KEY,
                     secret_key=s3tools.SECRET_KEY, secure=False, region="us-east-1") as c:
        if op == "put":
            uid = await c._create_multipart_upload(b, key, {})

            async def send(n: int, body: bytes) -> tuple[int, str]:
                return n, await c._upload_part(b, key, body, None, uid, n)
            done = await _multipart(size, send)
            from miniopy_async.datatypes import Part
            await c._complete_multipart_upload(b, key, uid, [Part(i, e) for i, e in done])
            return {"bytes": size}
        if op == "get":
            r = await c.get_object(b, key)
            got = 0
            async for chunk in r.content.iter_chunked(PIECE):
                got += len(chunk)
            r.release()
            return {"bytes": got}
        if op == "list":
            t0 = time.perf_counter()
            first = None
            n = 0
            async for _o in c.list_objects(b, prefix=f"{LISTED}/"):
                n += 1
                if first is None:
                    first = time.perf_counter() - t0
            return {"entries": n, "first": first}
        lat: dict[str, list[float]] = {"put": [], "head": [], "get": []}
        body = os.urandom(4096)
        for i in range(small):
            k = f"small/m{i}"
            t = time.perf_counter()
            await c.put_object(b, k, io.BytesIO(body), len(body))
            lat["put"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await c.stat_object(b, k)
            lat["head"].append(time.perf_counter() - t)
            t = time.perf_counter()
            r = await c.get_object(b, k)
            assert len(await r.read()) == 4096
            r.release()
            lat["get"].append(time.perf_counter() - t)
        return {"latency": lat}


def worker(argv: list[str]) -> None:
    lib, op, ep, key, size, small, unsigned, spid = argv
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn = {"aiobotocore": boto_op, "obstore": obstore_op, "miniopy-async": minio_op}[lib]
    # import and client set-up outside the clock
    asyncio.run(fn("small", ep, key, 0, 1, unsigned == "1"))
    c0, s0, t0 = _cpu(), _server_cpu(int(spid)), time.perf_counter()
    res = asyncio.run(fn(op, ep, key, int(size), int(small), unsigned == "1"))
    res.update(secs=time.perf_counter() - t0, cpu=_cpu() - c0,
               server_cpu=_server_cpu(int(spid)) - s0,
               rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               rss_before_mib=rss0 / 1024)
    print(json.dumps(res))


def run_one(lib: str, op: str, srv: s3tools.RcloneS3, size: int, small: int,
            unsigned: bool) -> dict[str, Any]:
    cmd = ["taskset", "-c", "1", sys.executable, __file__, "--worker", lib, op, srv.endpoint,
           f"large-{lib}.bin", str(size), str(small), "1" if unsigned else "0",
           str(srv.proc.pid)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = out.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        raise SystemExit(f"{lib} {op} failed (exit {out.returncode}):\n{out.stderr}")
    res: dict[str, Any] = json.loads(lines[-1])
    # obstore 0.12 aborts (SIGABRT) at interpreter exit after an upload from an async
    # generator, once its result is printed: counted, so the table can say so
    res["exit"] = out.returncode
    return res


def _crashes(runs: list[dict[str, Any]]) -> str:
    bad = [r["exit"] for r in runs if r["exit"]]
    return f" exit status {bad[0]} at the end in {len(bad)} of {len(runs)} runs" if bad else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--small", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--ops", default="put,get,list,small",
                    help="which measurements, comma-separated (put,get,list,small)")
    ap.add_argument("--listed", type=int, default=10000,
                    help="objects in the listed prefix")
    ap.add_argument("--boto-unsigned", action="store_true",
                    help="also aiobotocore with UNSIGNED-PAYLOAD (as over https)")
    ap.add_argument("--worker", nargs=8, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker)
        return
    size = a.size_mib << 20
    variants = [(lib, False) for lib in a.libs.split(",")]
    if a.boto_unsigned:
        variants.append(("aiobotocore", True))
    print(f"# load average {os.getloadavg()[0]:.2f} at start; {a.size_mib} MiB, "
          f"{a.runs} runs, {a.small} small rounds", flush=True)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
        many = Path(tmp) / "data" / s3tools.BUCKET / LISTED
        many.mkdir(parents=True)
        for i in range(a.listed):
            (many / f"object-{i:06d}.bin").write_bytes(b"x" * 100)
        srv = s3tools.start_rclone(Path(tmp) / "data", cpu=0)
        try:
            rows = []
            ops = a.ops.split(",")
            for lib, unsigned in variants:
                name = lib + (" (unsigned payload)" if unsigned else "")
                for op in [o for o in ("put", "get") if o in ops]:
                    runs = [run_one(lib, op, srv, size, 0, unsigned) for _ in range(a.runs)]
                    best = max(runs, key=lambda r: r["bytes"] / r["secs"])
                    mbs = [r["bytes"] / r["secs"] / 1e6 for r in runs]
                    # CPU time per GiB: what a transfer costs, far less sensitive to
                    # other work on the machine than its wall-clock MB/s
                    per_gib = sorted(r["cpu"] / (r["bytes"] / (1 << 30)) for r in runs)
                    rows.append(f"| {name} | {op.upper()} {a.size_mib} MiB | "
                                f"{statistics.median(mbs):.0f} ({min(mbs):.0f}-{max(mbs):.0f})"
                                f" | {best['cpu']:.2f} | {statistics.median(per_gib):.2f} "
                                f"({per_gib[0]:.2f}-{per_gib[-1]:.2f}) | "
                                f"{best['server_cpu']:.2f} | "
                                f"{max(r['rss_mib'] for r in runs):.0f} |" + _crashes(runs))
                    print(rows[-1], f"load {os.getloadavg()[0]:.2f}", flush=True)
                if "list" not in ops:
                    continue
                r = run_one(lib, "list", srv, 0, 0, unsigned)
                rows.append(f"| {name} | list {r['entries']} objects (delimiter) | first "
                            f"entries after {r['first'] * 1e3:.0f} ms, all after "
                            f"{r['secs'] * 1e3:.0f} ms | {r['cpu']:.2f} | - | "
                            f"{r['server_cpu']:.2f} | {r['rss_mib']:.0f} |")
                print(rows[-1], f"load {os.getloadavg()[0]:.2f}", flush=True)
                if "small" not in ops:
                    continue
                r = run_one(lib, "small", srv, 0, a.small, unsigned)
                med = {k: statistics.median(v) * 1e3 for k, v in r["latency"].items()}
                rows.append(f"| {name} | small 4 KiB x{a.small} | put {med['put']:.2f} / "
                            f"head {med['head']:.2f} / get {med['get']:.2f} ms | "
                            f"{r['cpu']:.2f} | - | {r['server_cpu']:.2f} | "
                            f"{r['rss_mib']:.0f} |" + _crashes([r]))
                print(rows[-1], f"load {os.getloadavg()[0]:.2f}", flush=True)
        finally:
            srv.stop()
    print("\n| library | operation | MB/s median (min-max), or median latency | client CPU s "
          "| client CPU s/GiB median (min-max) | server CPU s | client peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
