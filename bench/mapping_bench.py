"""Time to map and unmap N ports on a real miniupnpd (issue 17), as root.

    .venv/bin/python bench/mapping_bench.py                       # 101 ports, windows 1 and 4
    .venv/bin/python bench/mapping_bench.py --protocols upnp --windows 1,2,4,8
    .venv/bin/python bench/mapping_bench.py --miniupnpd daemon    # miniupnpd without -d
    git archive main src | tar -x -C /tmp/main   # the code before, for comparison:
    .venv/bin/python bench/mapping_bench.py --src /tmp/main/src --legacy

Builds the zero-config lab of the tests (``tests/zeroconf/zlab.py``: a router namespace
running Debian's miniupnpd, stund beyond it, a server namespace), then for each
protocol and window runs ``python -m natftp.nat.discovery map --ports 2121,30000-...``
in the server namespace: the time until every port is mapped (its ``first_pass``
event), then the time :meth:`PortMapper.stop` takes to remove them all. It checks that
every port was mapped and that the router's nftables chain is empty afterwards. One
line per run, with the load average (the machine is shared: read the figures with it).

``--miniupnpd debug`` (default) runs it with ``-d`` as the tests do: every debug line
also goes to /dev/console here, which makes it a slow router. ``daemon`` runs it as a
daemon. ``--legacy`` drives code from before issue 17 (no ``--window``/``--control``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "zeroconf"))

from zlab import Lab, zlab  # noqa: E402


def one_run(lab: Lab, ports: str, protocol: str, window: int, legacy: bool,
            src: str | None) -> dict[str, object]:
    args = ["map", "--ports", ports, "--protocols", protocol, "--stop-timeout", "300"]
    if not legacy:
        args += ["--window", str(window), "--control", "2121"]
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    p = subprocess.Popen(["ip", "netns", "exec", lab.server, sys.executable, "-m",
                          "natftp.nat.discovery", *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=env)
    assert p.stdin is not None and p.stdout is not None
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    try:
        while (ev := json.loads(p.stdout.readline()))["event"] != "first_pass":
            pass
        mapped_s = time.monotonic() - t0
        mapped = len(ev["mapped"])
        on_router = len(lab.dnat_ports())
        p.stdin.write("stop\n")
        p.stdin.flush()
        t1 = time.monotonic()
        while (ev := json.loads(p.stdout.readline()))["event"] != "stopped":
            pass
        unmapped_s = time.monotonic() - t1
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    return {"protocol": protocol, "window": "legacy" if legacy else window,
            "mapped": mapped, "on_router": on_router, "map_s": round(mapped_s, 1),
            "unmap_s": round(unmapped_s, 1), "left": len(lab.dnat_ports()),
            "load": round((load + os.getloadavg()[0]) / 2, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/mapping_bench.py")
    ap.add_argument("--ports", type=int, default=101, help="2121 + N-1 passive ports")
    ap.add_argument("--protocols", default="upnp,natpmp,pcp")
    ap.add_argument("--windows", default="1,4")
    ap.add_argument("--miniupnpd", choices=("debug", "daemon"), default="debug")
    ap.add_argument("--legacy", action="store_true")
    ap.add_argument("--src", help="PYTHONPATH for the mapper (another checkout's src)")
    a = ap.parse_args()
    ports = f"2121,30000-{30000 + a.ports - 2}"
    windows = [1] if a.legacy else [int(w) for w in a.windows.split(",")]
    rows = []
    with zlab() as lab:
        lab.start_stund()
        lab.start_miniupnpd(debug=a.miniupnpd == "debug")
        for protocol in a.protocols.split(","):
            for w in windows:
                r = one_run(lab, ports, protocol, w, a.legacy, a.src)
                rows.append(r)
                print(json.dumps(r), flush=True)
    print(f"\n{a.ports} ports, miniupnpd {a.miniupnpd}\n")
    print("| protocol | window | map (s) | unmap (s) | mapped | left | load |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['protocol']} | {r['window']} | {r['map_s']} | {r['unmap_s']} | "
              f"{r['mapped']}/{a.ports} | {r['left']} | {r['load']} |")
    return 0 if all(r["mapped"] == a.ports and r["left"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
