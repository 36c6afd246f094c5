"""natftp's benchmark: natftp and its peers side by side, one load generator, one table.

    .venv/bin/python bench/run.py [--quick] [--servers natftp,vsftpd] [--bench retr,small]

(``make bench`` runs the full set.) bench/README.md says how to read the output. Every
server runs on core 0, everything else (this process, the load workers) on core 1, so
each figure is "what one core of server does". Results: a table on stdout and the same
figures as JSON in bench/results/ (gitignored). Loopback only; every process started is
killed by PID; every loop is bounded by a count and a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import servers  # noqa: E402
from servers import Target  # noqa: E402

LOAD = HERE / "load.py"
# the small-file benchmark's load generator in C (--small-load c), built once per run
SMALLLOAD_SRC = HERE / "smallload.c"
PY = sys.executable
SERVER_CORE, LOAD_CORE = 0, 1
BENCHES = ("ceiling", "retr", "stor", "small", "sessions", "gateway", "ops", "footprint",
           "startup", "storm")
#: --bench ops: natftp's small-file figure with each operations feature (issue 20) on
OPS_VARIANTS = ("plain", "metrics", "xferlog", "both")
#: seconds between two scrapes of /metrics while the "metrics" variants run
SCRAPE_EVERY = 1.0
#: --tls runs these by default (the clear benchmarks' FTPS twins and the login storm)
TLS_BENCHES = ("retr", "stor", "small", "sessions", "storm")
#: the default set (--bench not given): the first round's table, plus footprint and startup
DEFAULT_BENCHES = ("ceiling", "retr", "stor", "small", "sessions", "gateway", "footprint",
                   "startup")
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.0f}s] {msg}", flush=True)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- processes --------------------------------------------------------------------------

@contextlib.contextmanager
def on_server_core() -> Iterator[None]:
    """Processes started inside inherit the server core (and so do their forks)."""
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        yield
    finally:
        os.sched_setaffinity(0, {LOAD_CORE})


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (forking servers: one or two per session)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory(pid: int) -> tuple[int, int, int]:
    """(RSS summed, PSS summed, processes) over the server's process tree, in bytes."""
    rss = pss = n = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) << 10
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) << 10
            n += 1
        except (OSError, ValueError):
            continue
    return rss, pss, n


def cpu(pid: int) -> float:
    """CPU seconds used by the server tree so far (reaped children included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        total += sum(int(x) for x in f[11:15 if p == pid else 13]) / tick
    return total


def reap(ps: list[subprocess.Popen[str]]) -> None:
    """Kill (and wait for) the load processes still running: none is left behind."""
    for p in ps:
        if p.poll() is None:
            p.kill()
            p.wait()


def worker(mode: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one load worker to completion; its last JSON line."""
    r = subprocess.run([PY, str(LOAD), mode, json.dumps(args)], capture_output=True,
                       text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"load {mode} failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def build_smallload(work: Path) -> Path:
    """Compile bench/smallload.c into ``work``; exit with the compiler's message if it fails."""
    out = work / "smallload"
    cmd = [os.environ.get("CC", "cc"), "-std=c11", "-O2", "-Wall", "-Wextra", "-o", str(out),
           str(SMALLLOAD_SRC)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SystemExit(f"bench/run.py: {cmd[0]} not found: the C small-file load "
                         "generator needs gcc and libc6-dev (`make system` installs them), "
                         "or use --small-load python") from None
    if r.returncode != 0:
        raise SystemExit(f"bench/run.py: building the small-file load generator failed:\n"
                         f"$ {' '.join(cmd)}\n{r.stderr}")
    if r.stderr.strip():
        say(f"compiler warnings for {SMALLLOAD_SRC.name}:\n{r.stderr.rstrip()}")
    return out


def fr(xs: list[float]) -> str:
    return " ".join(f"{x:.0f}" for x in xs)


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


# --- the machine --------------------------------------------------------------------

def prepare_machine() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 17
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):  # no CAP_SYS_RESOURCE (a container): the hard limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {LOAD_CORE})


def machine() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""
    lscpu = run("lscpu")
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                  if ln.startswith("Model name")), platform.processor())
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30, 1)}


def make_file(path: Path, size: int) -> None:
    """Non-repeating bytes (no sparse file: sendfile of holes would be unfairly cheap)."""
    block = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as f:
        for i in range(size >> 20):
            block[:8] = i.to_bytes(8, "big")
            f.write(block)
    os.chmod(path, 0o644)


def passive_range(count: int) -> tuple[int, int]:
    """Passive ports above Linux's ephemeral range (61000-), where the test suite's random
    ports (20000-32000) do not go; checked with SO_REUSEADDR, as the servers bind them, so
    an earlier run's TIME_WAIT does not count as taken."""
    import socket

    for low in range(61000, 65535 - count, count):
        ok = True
        for port in range(low, low + count):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return low, low + count - 1
    return servers.peers.free_port_range("127.0.0.1", min(count, 200))


# --- benchmarks ---------------------------------------------------------------------

class Bench:
    def __init__(self, a: argparse.Namespace, work: Path) -> None:
        self.a = a
        self.work = work
        self.root = work / "root"
        self.big = self.root / "big.bin"
        self.size = a.size_mib << 20
        self.results: dict[str, dict[str, Any]] = {}
        self.passive = passive_range(a.passive_count)
        self.smallload: Path | None = None  # built by main() for --small-load c
        self.tls: servers.TLS | None = None  # --tls: made by main(), one for every server

    def put(self, server: str, key: str, value: Any) -> None:
        self.results.setdefault(server, {})[key] = value

    @contextlib.contextmanager
    def server(self, kind: str, natftp_args: list[str] | None = None,
               clear: bool = False) -> Iterator[Target]:
        """``kind`` on the server core; FTPS under --tls unless ``clear``."""
        with on_server_core():
            cm = servers.start(kind, self.root, self.passive, natftp_args,
                               None if clear else self.tls)
            t = cm.__enter__()
        try:
            yield t
        except BaseException:
            if not cm.__exit__(*sys.exc_info()):
                raise
        else:
            cm.__exit__(None, None, None)

    # 1. ceiling
    def ceiling(self) -> None:
        for key, role, client in (("retr", "send", "raw-recv"), ("stor", "recv", "raw-send")):
            out = self.root / "ceiling.out"
            runs = []
            for i in range(self.a.runs + 1):  # the first is a warm-up, not counted
                os.sync()  # no writeback of an earlier file competes with this one
                with on_server_core():
                    srv = subprocess.Popen(
                        [PY, str(LOAD), "raw-serve", json.dumps(
                            {"host": "127.0.0.1", "count": 1, "role": role,
                             "file": str(self.big if role == "send" else out)})],
                        stdout=subprocess.PIPE, text=True)
                try:
                    assert srv.stdout is not None
                    port = json.loads(srv.stdout.readline())["port"]
                    r = worker(client, {"host": "127.0.0.1", "port": port,
                                        "file": str(self.big)}, 300)
                    srv.wait(60)
                finally:
                    if srv.poll() is None:
                        srv.kill()
                        srv.wait()
                out.unlink(missing_ok=True)
                if i:
                    runs.append(r["bytes"] / r["seconds"] / 1e6)
            self.put("ceiling", f"{key}_mbs", {"median": median(runs), "runs": runs})
            say(f"ceiling {key} ({'raw TCP' if key == 'retr' else 'raw TCP into a file'}): "
                f"{median(runs):.0f} MB/s [{fr(runs)}]  load {loadavg()}")

    # 2. single stream
    def stream(self, t: Target, upload: bool, column: str | None = None) -> None:
        key = "stor" if upload else "retr"
        column = column or t.kind
        runs = []
        cpus = []
        name = f"up-{t.kind}.bin"
        for i in range(self.a.runs + 1):  # the first is a warm-up, not counted
            args = {**t.args(), "name": name if upload else "big.bin", "file": str(self.big)}
            os.sync()
            c0 = cpu(t.pid)
            r = worker(key, args, 600)
            c1 = cpu(t.pid)
            if r["bytes"] != self.size:
                raise RuntimeError(f"{t.kind} {key}: {r['bytes']} bytes, not {self.size}")
            if t.tls and r.get("tls") != "TLSv1.3":
                raise RuntimeError(f"{t.kind} {key}: negotiated {r.get('tls')}, not TLS 1.3")
            if upload:
                got = (self.root / name).stat().st_size
                (self.root / name).unlink()
                if got != self.size:
                    raise RuntimeError(f"{t.kind} STOR stored {got} bytes, not {self.size}")
            if i:
                runs.append(r["bytes"] / r["seconds"] / 1e6)
                cpus.append((c1 - c0) / (r["bytes"] / 2**30))
        self.put(column, f"{key}_mbs", {"median": median(runs), "runs": runs,
                                         "cpu_s_per_gib": median(cpus), "cpu_runs": cpus,
                                         "tls_session_reused": r.get("reused")})
        say(f"{column}{' (FTPS)' if t.tls else ''} {key.upper()} {self.size >> 20} MiB: "
            f"{median(runs):.0f} MB/s [{fr(runs)}], server cpu {median(cpus):.2f} s/GiB  "
            f"load {loadavg()}")

    # 3. small files
    def small_cmd(self, t: Target, sessions: int) -> list[str]:
        """One small-file load process: bench/smallload.c (``c``) or load.py's small mode."""
        if self.a.small_load == "c" and not t.tls:
            assert self.smallload is not None
            return [str(self.smallload), t.host, str(t.port), t.user, t.password,
                    "small.bin", "4096", str(sessions), str(self.a.duration)]
        args = {**t.args(), "name": "small.bin", "size": 4096, "duration": self.a.duration,
                "sessions": sessions}
        return [PY, str(LOAD), "small", json.dumps(args)]

    def small_run(self, t: Target, n: int) -> dict[str, Any]:
        """One small-file measurement with ``n`` sessions."""
        procs = min(self.a.procs, n)
        per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        c0, w0 = cpu(t.pid), time.monotonic()
        ps = [subprocess.Popen(self.small_cmd(t, k), stdout=subprocess.PIPE,
                               text=True) for k in per]
        outs = []
        try:
            for p in ps:
                o, _ = p.communicate(timeout=self.a.duration + 120)
                if p.returncode != 0 or not o.strip():
                    raise RuntimeError(f"small-file load ({self.small_load_name(t)}) "
                                       f"failed with status {p.returncode}")
                outs.append(json.loads(o.strip().splitlines()[-1]))
        finally:
            reap(ps)
        # core use over the whole run (logins and teardown included)
        server_cpu = (cpu(t.pid) - c0) / (time.monotonic() - w0)
        lat = [x for o in outs for x in o["latencies"]]
        secs = max(o["seconds"] for o in outs)
        return {"tps": len(lat) / secs, "p50_ms": (pct(lat, .5) or 0) * 1e3,
                "p99_ms": (pct(lat, .99) or 0) * 1e3,
                "errors": sum(o["errors"] for o in outs),
                "error_samples": [e for o in outs for e in o["error_samples"]][:3],
                "server_cpu": server_cpu,
                "load_cpu": sum(o["cpu"] for o in outs) / secs}

    def small_load_name(self, t: Target) -> str:
        """The generator that ran: smallload.c speaks no TLS, FTPS runs load.py's."""
        return "c" if self.a.small_load == "c" and not t.tls else "python"

    def small(self, t: Target) -> None:
        for n in self.a.small_sessions:
            procs = min(self.a.procs, n)
            runs = [self.small_run(t, n) for _ in range(self.a.runs)]
            best = sorted(runs, key=lambda r: r["tps"])[len(runs) // 2]
            self.put(t.kind, f"small{n}", {
                "load": self.small_load_name(t),
                "us_per_transfer": median([r["server_cpu"] / r["tps"] * 1e6
                                           for r in runs if r["tps"]]),
                "tps": median([r["tps"] for r in runs]),
                "p50_ms": median([r["p50_ms"] for r in runs]),
                "p99_ms": median([r["p99_ms"] for r in runs]),
                "errors": sum(r["errors"] for r in runs),
                "server_cpu": best["server_cpu"], "load_cpu": best["load_cpu"],
                "runs": runs})
            r = self.results[t.kind][f"small{n}"]
            say(f"{t.kind} small files x{n} sessions ({procs} procs, "
                f"{'C' if r['load'] == 'c' else 'Python'} load): {r['tps']:.0f}/s "
                f"({r['us_per_transfer'] or 0:.0f} µs of server core each) "
                f"p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms, errors {r['errors']} "
                f"{best['error_samples'][:1]}, server cpu {best['server_cpu']:.2f}, "
                f"load cpu {best['load_cpu']:.2f}  load {loadavg()}")

    # 3b. the cost of metrics and the xferlog (issue 20) on the small-file figure
    def ops(self) -> None:
        """natftp's small-file transfers/s without and with ``--status-listen`` (scraped
        every SCRAPE_EVERY s meanwhile) and ``--xferlog``; the variants take turns in
        each round, in a rotating order, so a drift of the machine spreads over all."""
        n = self.a.small_sessions[0]
        xferlog = self.work / "xferlog"
        tps: dict[str, list[float]] = {v: [] for v in OPS_VARIANTS}
        for i in range(self.a.runs):
            order = OPS_VARIANTS[i % len(OPS_VARIANTS):] + OPS_VARIANTS[:i % len(OPS_VARIANTS)]
            for variant in order:
                args: list[str] = []
                if variant in ("metrics", "both"):
                    args += ["--status-listen", "127.0.0.1:0"]
                if variant in ("xferlog", "both"):
                    args += ["--xferlog", str(xferlog)]
                with self.server("natftp", args) as t, scraping(t.status_port):
                    tps[variant].append(self.small_run(t, n)["tps"])
                xferlog.unlink(missing_ok=True)
        base = median(tps["plain"])
        for v in OPS_VARIANTS:
            m = median(tps[v])
            self.put("natftp_ops", f"small{n}_{v}", {"tps": m, "runs": tps[v]})
            say(f"natftp small files x{n} ({v}): {m:.0f}/s [{fr(tps[v])}]"
                + (f" = {m / base:.3f}x plain" if base and v != "plain" else "")
                + f"  load {loadavg()}")

    # 4. idle sessions (a fresh server each time: memory is measured from its start)
    def sessions(self, kind: str) -> None:
        for n in self.a.idle_sessions:
            for start in ("ramped", "burst"):
                with self.server(kind) as t:
                    self._sessions(t, n, start)

    def _sessions(self, t: Target, n: int, start: str) -> None:
        # one login (and a transfer) first: lazily loaded code and the first session's
        # caches are not counted as "per session"
        worker("retr", {**t.args(), "name": "small.bin", "file": ""}, 60)
        time.sleep(0.5)
        rss0, pss0, np0 = memory(t.pid)
        procs = min(self.a.procs, n)
        per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        args = {**t.args(), "start": start, "login_timeout": self.a.login_timeout,
                "open_budget": self.a.open_budget,
                "probes": 400, "probe_seconds": 15}
        ps = [subprocess.Popen([PY, str(LOAD), "idle", json.dumps({**args, "sessions": k})],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
              for k in per]
        try:
            ready = []
            for p in ps:
                assert p.stdout is not None
                line = p.stdout.readline()  # bounded: login_timeout per session
                if not line:
                    raise RuntimeError(f"{t.kind}: idle worker died")
                ready.append(json.loads(line))
            time.sleep(1.0)
            rss1, pss1, np1 = memory(t.pid)
            for p in ps:
                assert p.stdin is not None
                p.stdin.write("probe\n")
                p.stdin.flush()
            done = []
            for p in ps:
                o, _ = p.communicate(timeout=120)
                done.append(json.loads(o.strip().splitlines()[-1]))
        finally:
            reap(ps)
        opened = sum(r["open"] for r in ready)
        failed = sum(r["failed"] for r in ready)
        skipped = sum(r["skipped"] for r in ready)
        rtts = [x for d in done for x in d["rtts"]]
        res = {"sessions": n, "open": opened, "failed": failed, "skipped": skipped,
               "error_samples": sorted({e for r in ready for e in r["error_samples"]})[:4],
               "open_seconds": max(r["open_seconds"] for r in ready),
               "rss_per_session_kib": (rss1 - rss0) / max(opened, 1) / 1024,
               "pss_per_session_kib": (pss1 - pss0) / max(opened, 1) / 1024,
               "rss_before_mib": rss0 / 2**20, "rss_after_mib": rss1 / 2**20,
               "processes": [np0, np1],
               "noop_p50_ms": (pct(rtts, .5) or 0) * 1e3,
               "noop_p99_ms": (pct(rtts, .99) or 0) * 1e3 if rtts else None,
               "noop_failed": sum(d["probe_failed"] for d in done),
               "still_open": sum(d["still_open"] for d in done)}
        self.put(t.kind, f"idle{n}_{start}", res)
        p99 = res["noop_p99_ms"]
        say(f"{t.kind} {n} idle sessions, {start} start: {opened} open, {failed} failed, "
            f"{skipped} not tried (open budget {self.a.open_budget:g} s) "
            f"{res['error_samples'][:1]} in {res['open_seconds']:.1f} s; "
            f"RSS {res['rss_per_session_kib']:.1f} KiB/session "
            f"(PSS {res['pss_per_session_kib']:.1f}), {np1} processes; NOOP p99 "
            f"{'-' if p99 is None else f'{p99:.1f} ms'} ({res['noop_failed']} failed, "
            f"{res['still_open']} still open)  load {loadavg()}")

    # 5. gateway: natftp's relay and HAProxy's in the same place
    def gateway(self) -> None:
        """1 GiB RETR and STOR from natftp directly, through ``natftp gateway`` (splice;
        and --no-zero-copy) and through HAProxy (``mode tcp``, splice both ways), each
        relay on the server's core (the target's configuration) or, for
        ``gateway_load_core``, on the load's. Relay CPU per GiB is the relay process's
        user+system time over the transfer."""
        import gwrun

        with self.server("natftp", clear=True) as t:
            paths: list[tuple[str, Callable[[], contextlib.AbstractContextManager[Any]],
                              bool]] = [
                ("direct", lambda: contextlib.nullcontext(None), True),
                ("gateway", lambda: gwrun.gateway((t.host, t.port)), True),
                ("haproxy", lambda: haproxy(t, self.passive, self.work), True),
                ("gateway_copy", lambda: gwrun.gateway((t.host, t.port),
                                                       args=["--no-zero-copy"]), True),
                ("gateway_load_core", lambda: gwrun.gateway((t.host, t.port)), False),
            ]
            for name, cm, server_core in paths:
                with on_server_core() if server_core else contextlib.nullcontext():
                    ctx = cm()
                    gw = ctx.__enter__()
                try:
                    host, port = (t.host, t.port) if gw is None else (gw.host, gw.port)
                    relay = None if gw is None else gw.proc.pid
                    for key in ("retr", "stor"):
                        if key not in self.a.gateway_ops:
                            continue
                        self._relayed(t, name, key, host, port, relay)
                finally:
                    ctx.__exit__(None, None, None)

    def _relayed(self, t: Target, name: str, key: str, host: str, port: int,
                 relay: int | None) -> None:
        runs, relay_cpu, server_cpu = [], [], []
        for i in range(self.a.runs + (key == "stor")):  # STOR: a warm-up first
            upname = f"up-gw-{name}.bin"
            args = {**t.args(), "host": host, "port": port,
                    "name": upname if key == "stor" else "big.bin",
                    "file": str(self.big) if key == "stor" else ""}
            os.sync()
            r0 = cpu(relay) if relay else 0.0
            s0 = cpu(t.pid)
            r = worker(key, args, 600)
            r1 = cpu(relay) if relay else 0.0
            s1 = cpu(t.pid)
            if key == "stor":
                (self.root / upname).unlink(missing_ok=True)
                if i == 0:
                    continue
            if r["bytes"] != self.size:
                raise RuntimeError(f"{name} {key}: {r['bytes']} bytes")
            gib = r["bytes"] / 2**30
            runs.append(r["bytes"] / r["seconds"] / 1e6)
            relay_cpu.append((r1 - r0) / gib)
            server_cpu.append((s1 - s0) / gib)
        self.put("gateway", f"{name}_{key}_mbs", {
            "median": median(runs), "runs": runs,
            "relay_cpu_s_per_gib": median(relay_cpu) if relay else None,
            "server_cpu_s_per_gib": median(server_cpu)})
        if key == "retr":  # the first round's key, kept for old JSON readers
            self.put("gateway", f"{name}_mbs", {"median": median(runs), "runs": runs})
        rc = f", relay cpu {median(relay_cpu):.2f} s/GiB" if relay else ""
        say(f"natftp {key.upper()} {name}: {median(runs):.0f} MB/s [{fr(runs)}]{rc}, "
            f"server cpu {median(server_cpu):.2f} s/GiB  load {loadavg()}")

    # 6. footprint: the server idle, before its first client and after one login
    def footprint(self, kind: str) -> None:
        with self.server(kind) as t:
            time.sleep(1.0)
            rss0, pss0, n0 = memory(t.pid)
            worker("retr", {**t.args(), "name": "small.bin", "file": ""}, 60)
            time.sleep(0.5)
            rss1, pss1, n1 = memory(t.pid)
        res = {"pss_start_mib": pss0 / 2**20, "rss_start_mib": rss0 / 2**20,
               "pss_after_login_mib": pss1 / 2**20, "rss_after_login_mib": rss1 / 2**20,
               "processes": [n0, n1]}
        self.put(kind, "footprint", res)
        say(f"{kind}{' (FTPS)' if t.tls else ''} idle: PSS {res['pss_start_mib']:.1f} MiB "
            f"(RSS {res['rss_start_mib']:.1f}, {n0} processes) before the first client, "
            f"PSS {res['pss_after_login_mib']:.1f} MiB after one session  load {loadavg()}")

    # 7. CLI start-up: hyperfine on the load core against natftp on the server core
    def startup(self) -> None:
        hf = shutil.which("hyperfine")
        if hf is None:
            raise RuntimeError("hyperfine not found: `make system` installs it (Debian)")
        exe = str(Path(PY).parent / "natftp")
        # as installed: bytecode compiled (pip does it; PYTHONDONTWRITEBYTECODE, set in
        # some sandboxes, would make every run compile natftp's sources again)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        import natftp

        subprocess.run([PY, "-m", "compileall", "-q", str(Path(natftp.__file__).parent)],
                       env=env, check=True, capture_output=True, timeout=300)
        with self.server("natftp", clear=True) as t:
            url = f"ftp://{t.user}:{t.password.replace(' ', '%20')}@{t.host}:{t.port}/"
            cmds = {"natftp ls": f"{exe} ls {url}", "natftp --help": f"{exe} --help",
                    "natftp --version": f"{exe} --version",
                    "curl (listing)": f"curl -s -o /dev/null {url}"}
            out = self.work / "hyperfine.json"
            r = subprocess.run([hf, "-N", "--warmup", "3", "--runs", str(self.a.startup_runs),
                                "--export-json", str(out),
                                *[x for name, c in cmds.items() for x in ("-n", name, c)]],
                               capture_output=True, text=True, timeout=600, env=env)
            if r.returncode != 0:
                raise RuntimeError(f"hyperfine failed: {r.stderr[-2000:]}")
        for res in json.loads(out.read_text())["results"]:
            name = res["command"]
            self.put("startup", name, {"mean_s": res["mean"], "stddev_s": res["stddev"],
                                       "median_s": res["median"], "min_s": res["min"],
                                       "user_s": res["user"], "system_s": res["system"]})
            say(f"start-up {name}: {res['mean'] * 1e3:.1f} ms ± {res['stddev'] * 1e3:.1f} "
                f"(median {res['median'] * 1e3:.1f}, min {res['min'] * 1e3:.1f}, user "
                f"{res['user'] * 1e3:.1f}, system {res['system'] * 1e3:.1f})  "
                f"load {loadavg()}")

    # 8. FTPS login storm: full TLS handshakes (AUTH TLS, QUIT) per second of server core
    def storm(self, t: Target) -> None:
        if not t.tls:
            return
        procs = self.a.procs
        runs = []
        for _ in range(self.a.runs):
            args = {**t.args(), "duration": self.a.duration,
                    "concurrency": self.a.storm_concurrency}
            c0, w0 = cpu(t.pid), time.monotonic()
            ps = [subprocess.Popen([PY, str(LOAD), "storm", json.dumps(args)],
                                   stdout=subprocess.PIPE, text=True) for _ in range(procs)]
            outs = []
            try:
                for p in ps:
                    o, _ = p.communicate(timeout=self.a.duration + 120)
                    if p.returncode != 0 or not o.strip():
                        raise RuntimeError(f"storm load failed with status {p.returncode}")
                    outs.append(json.loads(o.strip().splitlines()[-1]))
            finally:
                reap(ps)
            secs = time.monotonic() - w0
            server_cpu = cpu(t.pid) - c0
            logins = sum(o["logins"] for o in outs)
            versions = sorted({v for o in outs for v in o["tls"]})
            if versions != ["TLSv1.3"] and logins:
                raise RuntimeError(f"{t.kind} storm: negotiated {versions}, not TLS 1.3")
            lat = [x for o in outs for x in o["latencies"]]
            runs.append({"logins_s": logins / max(o["seconds"] for o in outs),
                         "per_cpu_s": logins / server_cpu if server_cpu else None,
                         "server_cpu": server_cpu / secs,
                         "load_cpu": sum(o["cpu"] for o in outs) / secs,
                         "p50_ms": (pct(lat, .5) or 0) * 1e3,
                         "p99_ms": (pct(lat, .99) or 0) * 1e3,
                         "errors": sum(o["errors"] for o in outs),
                         "error_samples": [e for o in outs for e in o["error_samples"]][:3]})
        best = sorted(runs, key=lambda r: r["logins_s"])[len(runs) // 2]
        self.put(t.kind, "storm", {**best, "runs": runs,
                                   "logins_s": median([r["logins_s"] for r in runs]),
                                   "per_cpu_s": median([r["per_cpu_s"] for r in runs
                                                        if r["per_cpu_s"]])})
        r = self.results[t.kind]["storm"]
        say(f"{t.kind} FTPS login storm ({procs} procs x {self.a.storm_concurrency}): "
            f"{r['logins_s']:.0f} handshakes/s, {r['per_cpu_s'] or 0:.0f} per second of server "
            f"core; p50/p99 {best['p50_ms']:.1f}/{best['p99_ms']:.1f} ms, errors "
            f"{best['errors']} {best['error_samples'][:1]}, cpu srv/load "
            f"{best['server_cpu']:.2f}/{best['load_cpu']:.2f}  load {loadavg()}")


@contextlib.contextmanager
def haproxy(t: Target, passive: tuple[int, int], work: Path) -> Iterator[Any]:
    """HAProxy (Debian) in front of ``t`` as the gateway stands in front of it: ``mode
    tcp``, one thread, splice both ways (``option splice-request``/``splice-response``),
    control port and the server's whole passive range forwarded port for port. It binds
    127.0.0.2 (the server holds the passive ports on 127.0.0.1); EPSV's 229 names only a
    port, so the client dials the same address for data. The process runs where the
    caller's affinity says (the server core)."""
    from types import SimpleNamespace

    exe = shutil.which("haproxy")
    if exe is None:
        raise RuntimeError("haproxy not found: `make system` installs it (Debian)")
    host = "127.0.0.2"
    port = servers.peers.free_port(host)
    conf = work / "haproxy.cfg"
    conf.write_text(f"""global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 10s
    timeout client 600s
    timeout server 600s
    option splice-request
    option splice-response
listen ftp
    bind {host}:{port}
    server s {t.host}:{t.port}
listen data
    bind {host}:{passive[0]}-{passive[1]}
    server s {t.host}
""")
    log = open(work / "haproxy.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([exe, "-db", "-f", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + 10
        while True:
            try:
                servers.peers.read_banner(host, port)
                break
            except OSError as e:
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"haproxy did not start: "
                                       f"{(work / 'haproxy.log').read_text()[-2000:]}") from e
                time.sleep(0.05)
        yield SimpleNamespace(host=host, port=port, proc=proc)
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


@contextlib.contextmanager
def scraping(port: int | None) -> Iterator[list[int]]:
    """Scrape ``/metrics`` every SCRAPE_EVERY s in a thread while the body runs (as
    Prometheus would, more often); yields the list of scrape sizes."""
    import threading
    import urllib.request

    sizes: list[int] = []
    if port is None:
        yield sizes
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(SCRAPE_EVERY):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=10) as r:
                sizes.append(len(r.read()))

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        yield sizes
    finally:
        stop.set()
        th.join(15)


# --- the table ----------------------------------------------------------------------

def table(res: dict[str, dict[str, Any]], kinds: list[str], a: argparse.Namespace) -> str:
    cols = [k for k in ["natftp-clear", *kinds] if k in res]
    if (res.get("gateway") or res.get("startup") or res.get("natftp_ops")) and (
            "natftp" not in cols):
        cols.insert(0, "natftp")  # the gateway, start-up and ops rows are natftp's
    ceil = res.get("ceiling", {})
    nat = res.get("natftp", {})
    rows: list[list[str]] = []

    def val(k: str, key: str, field: str | None = None) -> float | None:
        v = res.get(k, {}).get(key)
        if v is None:
            return None
        return v.get(field or "median") if isinstance(v, dict) else v

    def fmt(x: float | None, f: str = "{:.0f}") -> str:
        return "-" if x is None else f.format(x)

    def ratio(x: float | None, ref: float | None) -> str:
        return "-" if x is None or not ref else f"{x / ref:.2f}x"

    for key, label in (("retr_mbs", f"RETR {a.size_mib} MiB MB/s"),
                       ("stor_mbs", f"STOR {a.size_mib} MiB MB/s")):
        c = val("ceiling", key)
        rows.append([label, fmt(c)] + [fmt(val(k, key)) for k in cols])
        rows.append(["  x ceiling", "1.00x" if c else "-"] +
                    [ratio(val(k, key), c) for k in cols])
        rows.append(["  x natftp", "-"] + [ratio(val(k, key), val("natftp", key))
                                           for k in cols])
        rows.append(["  x natftp in the clear", "-"] + [
            ratio(val(k, key), val("natftp-clear", key)) for k in cols])
        rows.append(["  server cpu s/GiB", "-"] +
                    [fmt(val(k, key, "cpu_s_per_gib"), "{:.2f}") for k in cols])
    for n in a.small_sessions:
        key = f"small{n}"
        rows.append([f"small x{n} transfers/s", "-"] +
                    [fmt(val(k, key, "tps")) for k in cols])
        rows.append(["  x natftp", "-"] + [ratio(val(k, key, "tps"),
                                                 val("natftp", key, "tps")) for k in cols])
        rows.append(["  µs of server core each", "-"] +
                    [fmt(val(k, key, "us_per_transfer")) for k in cols])
        rows.append(["  p50 / p99 ms", "-"] + [
            "-" if val(k, key, "tps") is None else
            f"{val(k, key, 'p50_ms'):.1f}/{val(k, key, 'p99_ms'):.1f}" for k in cols])
        rows.append(["  errors; cpu srv/load", "-"] + [
            "-" if val(k, key, "tps") is None else
            f"{val(k, key, 'errors'):.0f}; {val(k, key, 'server_cpu'):.2f}/"
            f"{val(k, key, 'load_cpu'):.2f}" for k in cols])
    for n in a.idle_sessions:
        for start in ("ramped", "burst"):
            key = f"idle{n}_{start}"
            rows.append([f"{n} idle {start}: KiB/sess", "-"] +
                        [fmt(val(k, key, "rss_per_session_kib"), "{:.1f}") for k in cols])
            rows.append(["  x natftp", "-"] + [
                ratio(val(k, key, "rss_per_session_kib"),
                      val("natftp", key, "rss_per_session_kib")) for k in cols])
            rows.append(["  PSS KiB/sess", "-"] +
                        [fmt(val(k, key, "pss_per_session_kib"), "{:.1f}") for k in cols])
            rows.append(["  NOOP p99 ms", "-"] +
                        [fmt(val(k, key, "noop_p99_ms"), "{:.1f}") for k in cols])
            rows.append(["  open/failed/untried", "-"] + [
                "-" if val(k, key, "open") is None else
                f"{val(k, key, 'open'):.0f}/{val(k, key, 'failed'):.0f}/"
                f"{val(k, key, 'skipped'):.0f}" for k in cols])
    rows.append(["TLS handshakes/s of server core", "-"] +
                [fmt(val(k, "storm", "per_cpu_s")) for k in cols])
    rows.append(["  x natftp", "-"] + [ratio(val(k, "storm", "per_cpu_s"),
                                             val("natftp", "storm", "per_cpu_s"))
                                       for k in cols])
    rows.append(["  handshakes/s; cpu srv/load", "-"] + [
        "-" if val(k, "storm", "logins_s") is None else
        f"{val(k, 'storm', 'logins_s'):.0f}; {val(k, 'storm', 'server_cpu'):.2f}/"
        f"{val(k, 'storm', 'load_cpu'):.2f}" for k in cols])
    rows.append(["  p50 / p99 ms; errors", "-"] + [
        "-" if val(k, "storm", "logins_s") is None else
        f"{val(k, 'storm', 'p50_ms'):.0f}/{val(k, 'storm', 'p99_ms'):.0f}; "
        f"{val(k, 'storm', 'errors'):.0f}" for k in cols])
    rows.append(["idle server PSS MiB", "-"] +
                [fmt(val(k, "footprint", "pss_start_mib"), "{:.1f}") for k in cols])
    rows.append(["  RSS MiB", "-"] +
                [fmt(val(k, "footprint", "rss_start_mib"), "{:.1f}") for k in cols])
    rows.append(["  PSS after one session", "-"] +
                [fmt(val(k, "footprint", "pss_after_login_mib"), "{:.1f}") for k in cols])
    ops = res.get("natftp_ops", {})
    if ops:
        n = a.small_sessions[0]
        base = ops.get(f"small{n}_plain", {}).get("tps")
        for v in OPS_VARIANTS:
            x = ops.get(f"small{n}_{v}", {}).get("tps")
            rows.append([f"natftp small x{n} {v}/s", "-", f"{fmt(x)} ({ratio(x, base)})"] +
                        ["" for _ in cols[1:]])
    g = res.get("gateway", {})
    if g:
        for key in ("retr", "stor"):
            d = g.get(f"direct_{key}_mbs", {}).get("median")
            h = g.get(f"haproxy_{key}_mbs", {})
            for name in ("direct", "gateway", "haproxy", "gateway_copy",
                         "gateway_load_core"):
                v = g.get(f"{name}_{key}_mbs")
                if not v:
                    continue
                cell = f"{fmt(v['median'])} ({ratio(v['median'], d)} direct"
                if name != "haproxy" and h.get("median") and name != "direct":
                    cell += f", {ratio(v['median'], h['median'])} haproxy"
                cell += ")"
                rc = v.get("relay_cpu_s_per_gib")
                if rc is not None:
                    cell += f"; relay {rc:.2f} s/GiB"
                    if name != "haproxy" and h.get("relay_cpu_s_per_gib"):
                        cell += f" ({ratio(rc, h['relay_cpu_s_per_gib'])} haproxy)"
                rows.append([f"natftp {key.upper()} {name} MB/s", "-", cell] +
                            ["" for _ in cols[1:]])
    st = res.get("startup", {})
    for name, v in st.items():
        rows.append([f"start-up {name} ms", "-",
                     f"{v['mean_s'] * 1e3:.1f} ± {v['stddev_s'] * 1e3:.1f}"] +
                    ["" for _ in cols[1:]])
    del nat, ceil
    # a block whose every cell is "-" (a benchmark not run) is left out
    kept: list[list[str]] = []
    block: list[list[str]] = []
    for r in rows + [["END"]]:
        if not r[0].startswith("  ") and block:
            if any(c not in ("-", "", "-/-") for row in block for c in row[1:]):
                # and within a block, a sub-row that is all "-" too
                kept += [row for i, row in enumerate(block)
                         if i == 0 or any(c not in ("-", "") for c in row[1:])]
            block = []
        block.append(r)
    rows = kept
    head = ["", "ceiling"] + cols
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in [head, *rows]]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------

def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and durations, for development (not for reporting)")
    ap.add_argument("--tls", action="store_true",
                    help="FTPS (AUTH TLS, PROT P, TLS 1.3, one certificate): servers "
                         f"{', '.join(servers.TLS_KINDS)}, benchmarks "
                         f"{', '.join(TLS_BENCHES)}, and natftp's clear RETR/STOR beside")
    ap.add_argument("--servers", help=f"comma-separated, of: {', '.join(servers.KINDS)} "
                                      "(default: all; --tls: those that speak FTPS)")
    ap.add_argument("--bench", help=f"comma-separated, of: {', '.join(BENCHES)} (default: "
                                    f"{', '.join(DEFAULT_BENCHES)}; --tls: "
                                    f"{', '.join(TLS_BENCHES)})")
    ap.add_argument("--gateway-ops", default="retr,stor",
                    help="what --bench gateway transfers through each relay")
    ap.add_argument("--startup-runs", type=int, default=30,
                    help="hyperfine runs per start-up command")
    ap.add_argument("--storm-concurrency", type=int, default=8,
                    help="TLS logins in flight per load process (storm)")
    ap.add_argument("--runs", type=int, help="runs per figure (median); default 3, quick 1")
    ap.add_argument("--size-mib", type=int, help="RETR/STOR size; default 1024, quick 256")
    ap.add_argument("--duration", type=float, help="small-file seconds; default 8, quick 2")
    ap.add_argument("--small-sessions", help="default 50,200")
    ap.add_argument("--idle-sessions", help="default 1000,10000; quick 200,1000")
    ap.add_argument("--procs", type=int, default=4, help="load worker processes")
    ap.add_argument("--small-load", choices=("c", "python"), default="c",
                    help="small-file load generator: bench/smallload.c (built with cc at "
                         "the start) or bench/load.py's asyncio one")
    ap.add_argument("--login-timeout", type=float, default=30.0,
                    help="per idle session: connect, banner and login")
    ap.add_argument("--open-budget", type=float, default=150.0,
                    help="seconds to open the idle sessions; those not started by then "
                         "are reported as untried")
    ap.add_argument("--passive-count", type=int, default=2000,
                    help="passive ports per server (small files: many in TIME_WAIT)")
    ap.add_argument("--json", type=Path, help="default bench/results/bench-DATE.json")
    a = ap.parse_args()
    q = a.quick
    a.runs = a.runs or (1 if q else 3)
    a.size_mib = a.size_mib or (256 if q else 1024)
    a.duration = a.duration or (2.0 if q else 8.0)
    a.small_sessions = [int(x) for x in (a.small_sessions or "50,200").split(",")]
    a.idle_sessions = [int(x) for x in
                       (a.idle_sessions or ("200,1000" if q else "1000,10000")).split(",")]
    a.servers = [s for s in (a.servers or ",".join(
        servers.TLS_KINDS if a.tls else servers.KINDS)).split(",") if s]
    a.bench = [b for b in (a.bench or ",".join(
        TLS_BENCHES if a.tls else DEFAULT_BENCHES)).split(",") if b]
    a.gateway_ops = [x for x in a.gateway_ops.split(",") if x]
    for s in a.servers:
        if s not in servers.KINDS:
            ap.error(f"unknown server {s!r}")
        if a.tls and s not in servers.TLS_KINDS:
            ap.error(f"--tls: {s} is not benchmarked with FTPS (one of "
                     f"{', '.join(servers.TLS_KINDS)})")
    if a.tls:
        for b in a.bench:
            if b not in (*TLS_BENCHES, "footprint"):
                ap.error(f"--tls: benchmark {b!r} has no FTPS version (one of "
                         f"{', '.join(TLS_BENCHES)})")
    elif "storm" in a.bench:
        ap.error("the storm benchmark is FTPS logins: give --tls")
    for b in a.bench:
        if b not in BENCHES:
            ap.error(f"unknown benchmark {b!r}")
    return a


def main() -> int:
    a = parse()
    if os.geteuid() != 0:
        print("bench/run.py: needs root (vsftpd, ProFTPD and Pure-FTPd switch to the "
              "natftptest user); run `make bench` as root", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("bench/run.py: needs 2 cores (server and load are pinned apart)",
              file=sys.stderr)
        return 2
    prepare_machine()
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    if "sessions" in a.bench and max(a.idle_sessions) * 2 + 10000 > pid_max:
        say(f"kernel.pid_max {pid_max} is too low for {max(a.idle_sessions)} forked "
            "sessions (vsftpd: two processes each); raising it to 4194304")
        Path("/proc/sys/kernel/pid_max").write_text("4194304\n")
    started = datetime.datetime.now().astimezone()
    info = {"date": started.isoformat(timespec="seconds"), "machine": machine(),
            "load_before": loadavg(), "options": {k: v for k, v in vars(a).items()
                                                  if k != "json"}}
    say(f"natftp bench: {info['machine']}, load {info['load_before']}, "
        f"{'QUICK ' if a.quick else ''}{'FTPS ' if a.tls else ''}servers {a.servers}, "
        f"benchmarks {a.bench}")
    work = Path(tempfile.mkdtemp(prefix="natftp-bench-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    b = Bench(a, work)
    if a.tls:  # one certificate for every server (EC P-256: ProFTPD's TLSECCertificateFile)
        from natftp.tls import self_signed

        cert, key = self_signed(work, ("localhost", "127.0.0.1"), stem="bench",
                                common_name="natftp bench", days=2)
        b.tls = servers.TLS(cert, key)
    try:
        if ("small" in a.bench or "ops" in a.bench) and a.small_load == "c" and not a.tls:
            b.smallload = build_smallload(work)
            say(f"built {b.smallload} from {SMALLLOAD_SRC.relative_to(HERE.parent)}")
        b.root.mkdir()
        owner = servers.peers._system_user()
        os.chown(b.root, owner.pw_uid, owner.pw_gid)
        say(f"writing {a.size_mib} MiB test file into {b.root}")
        make_file(b.big, b.size)
        os.sync()
        (b.root / "small.bin").write_bytes(os.urandom(4096))
        os.chmod(b.root / "small.bin", 0o644)
        if "ceiling" in a.bench:
            b.ceiling()
        if a.tls and "natftp" in a.servers and {"retr", "stor"} & set(a.bench):
            # the reference of "FTPS RETR >= 0.8x natftp's own clear RETR", same run
            with b.server("natftp", clear=True) as t:
                for upload in (False, True):
                    if ("stor" if upload else "retr") in a.bench:
                        b.stream(t, upload=upload, column="natftp-clear")
        for kind in a.servers:
            want = [x for x in ("retr", "stor", "small", "storm") if x in a.bench]
            try:
                if want:
                    with b.server(kind) as t:
                        say(f"{kind} up on {t.host}:{t.port} (pid {t.pid})"
                            f"{', FTPS' if t.tls else ''}")
                        if "retr" in want:
                            b.stream(t, upload=False)
                        if "stor" in want:
                            b.stream(t, upload=True)
                        if "small" in want:
                            b.small(t)
                        if "storm" in want:
                            b.storm(t)
                if "sessions" in a.bench:
                    b.sessions(kind)
                if "footprint" in a.bench:
                    b.footprint(kind)
            except Exception as e:  # noqa: BLE001 - one server failing is reported
                say(f"{kind}: FAILED: {e}")
                b.put(kind, "failed", str(e)[-1000:])
        if "gateway" in a.bench:
            b.gateway()
        if "ops" in a.bench:
            b.ops()
        if "startup" in a.bench:
            b.startup()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["load_after"] = loadavg()
    info["seconds"] = round(time.monotonic() - T0)
    info["results"] = b.results
    text = table(b.results, a.servers, a)
    print(f"\nnatftp bench {info['date']} ({info['machine']['cpu']}, "
          f"{info['machine']['kernel']}){'; FTPS' if a.tls else ''}; load average before "
          f"{info['load_before']}, "
          f"after {info['load_after']}; {info['seconds']} s; medians of {a.runs} run(s)"
          f"{'; QUICK run' if a.quick else ''}\n{text}")
    out = a.json or HERE / "results" / f"bench-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    info["table"] = text
    out.write_text(json.dumps(info, indent=1))
    print(f"\nJSON: {out}")
    return 1 if any("failed" in r for r in b.results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
