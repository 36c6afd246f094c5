"""The cluster benchmark: aggregate small-file transfers/s through HAProxy with 1, 2 and 3
natftp nodes (issue 18), on this machine, in the lab's ``cluster`` topology.

    sudo .venv/bin/python bench/cluster_bench.py                 # 1, 2, 3 nodes, 20 s each
    sudo .venv/bin/python bench/cluster_bench.py --nodes 3 --duration 5   # a quick check

For each node count: natftp.lab.cluster.ClusterLab brings up HAProxy in the router
namespace and the nodes in theirs (configured only by ``natftp cluster``), then
``bench/load.py small`` runs in both client namespaces (c1, c2): each session logs in once
and loops EPSV + RETR of a small file through HAProxy (control connection balanced, data
connection forwarded to the node's passive slice, PROXY v2 on both). The figure is the sum
of both generators' transfers divided by the longer of their timed parts.

How the cores are shared: nothing is pinned. HAProxy, every node and both generators run
on all the machine's cores at once (two here), so adding nodes adds processes competing
for the same two cores: the figures show what the balancer and the extra hops cost and
whether more nodes help on one machine, not how a cluster of machines scales. Each run
prints the load average before it; figures taken while other work runs are not figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from natftp.lab.cluster import ClusterLab  # noqa: E402

USER, PASSWORD = "bench", "benchpw"
CLIENTS = ("c1", "c2")


def _load(cl: ClusterLab, client: str, sessions: int, duration: float, size: int,
          ) -> subprocess.Popen[str]:
    args = {"host": cl.public, "port": cl.port, "user": USER, "password": PASSWORD,
            "name": "small.bin", "size": size, "sessions": sessions, "duration": duration}
    return cl.lab.spawn(client, [sys.executable, str(HERE / "load.py"), "small",
                                 json.dumps(args)], stdout=subprocess.PIPE, text=True)


def run(nodes: int, duration: float, sessions: int, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="natftp-cluster-bench-") as tmp:
        with ClusterLab.up(Path(tmp), nodes=nodes, users={USER: PASSWORD}) as cl:
            (cl.root / "small.bin").write_bytes(os.urandom(size))
            load1 = os.getloadavg()[0]
            procs = [_load(cl, c, sessions // len(CLIENTS), duration, size)
                     for c in CLIENTS]
            results = []
            for p in procs:
                out, _ = p.communicate(timeout=duration + 150)
                results.append(json.loads(out.strip().splitlines()[-1]))
            per_node = {n: cl.log_of(n).read_text(errors="replace").count(" RETR ")
                        for n in cl.names}
    transfers = sum(r["transfers"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {"nodes": nodes, "transfers": transfers, "seconds": round(seconds, 2),
            "per_s": round(transfers / seconds, 1), "errors": sum(r["errors"] for r in results),
            "error_samples": [s for r in results for s in r["error_samples"]][:3],
            "retr_per_node": per_node, "load_before": round(load1, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="1,2,3", help="node counts to run (default 1,2,3)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of load per run")
    ap.add_argument("--sessions", type=int, default=16, help="sessions, split over c1/c2")
    ap.add_argument("--size", type=int, default=4096, help="bytes of the file (4096)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("cluster_bench: needs root (network namespaces)")
    rows = []
    for n in (int(x) for x in a.nodes.split(",")):
        started = time.monotonic()
        r = run(n, a.duration, a.sessions, a.size)
        rows.append(r)
        print(json.dumps(r), f"({time.monotonic() - started:.0f} s)", flush=True)
    print("\n| nodes | transfers/s | errors | RETR per node | load avg before |")
    print("|---|---|---|---|---|")
    for r in rows:
        spread = ", ".join(f"{k} {v}" for k, v in r["retr_per_node"].items())
        print(f"| {r['nodes']} | {r['per_s']} | {r['errors']} | {spread} | "
              f"{r['load_before']} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
