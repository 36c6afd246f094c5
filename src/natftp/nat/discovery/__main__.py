"""``python -m natftp.nat.discovery``: run discovery or port mapping from a shell.

Prints JSON (one object per line) so scripts and the tests can read it::

    discover [--sources upnp,natpmp,...] [--stun HOST[:PORT]]... [--timeout S]
    recheck  --interval S [same options]       one line per change, until killed
    map      --ports 21,30000-30099 [--protocols upnp,pcp,natpmp] [--lease S]
             [--control 21] [--window N] [--stop-timeout S]
             maps in the background, prints each port's outcome, removes the
             mappings when a line (or EOF) arrives on stdin
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

from natftp.nat.discovery.discover import (
    ALL_SOURCES,
    DEFAULT_TIMEOUT,
    DiscoveryConfig,
    DiscoveryResult,
    discover,
    rechecker,
)
from natftp.nat.discovery.mapping import (
    DEFAULT_LEASE,
    DEFAULT_PROTOCOLS,
    DEFAULT_WINDOW,
    PortMapper,
    PortResult,
)
from natftp.nat.policy import AdvertisePolicy
from natftp.proto.hostport import parse_port_range


def parse_ports(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, hi = parse_port_range(part)
        out.extend(range(lo, hi + 1))
    return out


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def result_json(r: DiscoveryResult, elapsed: float) -> dict[str, Any]:
    return {"address": str(r.address) if r.address else None, "source": r.source,
            "router": str(r.router) if r.router else None, "router_source": r.router_source,
            "tried": r.tried, "detail": r.detail, "message": r.message(),
            "elapsed": round(elapsed, 3)}


def port_json(r: PortResult) -> dict[str, Any]:
    return {"event": "port", "port": r.port, "state": r.state.value,
            "protocol": r.protocol, "lease": r.lease, "message": r.message}


def config_from(a: argparse.Namespace) -> DiscoveryConfig:
    return DiscoveryConfig(sources=tuple(a.sources.split(",")), stun_servers=tuple(a.stun),
                           timeout=a.timeout, gateway=a.gateway,
                           metadata_endpoint=a.metadata_endpoint)


async def run_discover(a: argparse.Namespace) -> int:
    config = config_from(a)
    config.load_clients()  # as natftp serve does at its start: not the round's time
    t0 = time.monotonic()
    r = await discover(config)
    emit(result_json(r, time.monotonic() - t0))
    return 0 if r.address or r.router else 1


async def run_recheck(a: argparse.Namespace) -> int:
    """Run :func:`rechecker` for ``--duration`` seconds; print each change it makes."""
    policy = AdvertisePolicy()
    task = asyncio.create_task(rechecker(policy, config_from(a), a.interval, first_now=True))
    seen = policy.discovered
    loop = asyncio.get_running_loop()
    end = loop.time() + a.duration
    try:
        while loop.time() < end:  # bounded: --duration
            await asyncio.sleep(0.05)
            now = policy.discovered
            if now is not None and now != seen:
                seen = now
                emit({"event": "change", "address": str(now.public or now.router)})
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return 0


async def run_map(a: argparse.Namespace) -> int:
    mapper = PortMapper(parse_ports(a.ports), protocols=tuple(a.protocols.split(",")),
                        lease=a.lease, timeout=a.timeout, gateway=a.gateway,
                        on_change=lambda r: emit(port_json(r)),
                        control=parse_ports(a.control) if a.control else (),
                        window=a.window)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    mapper.start()
    await mapper.wait_first_pass()
    emit({"event": "first_pass", "tried": mapper.tried, "report": mapper.report(),
          "mapped": sorted(mapper.mapped_ports()), "seconds": round(loop.time() - t0, 3)})
    await loop.run_in_executor(None, sys.stdin.readline)
    renewed = {p: r.renew_at for p, r in mapper.results.items()}
    t0 = loop.time()
    await mapper.stop(a.stop_timeout)
    emit({"event": "stopped", "report": mapper.report(),
          "states": {str(p): r.state.value for p, r in mapper.results.items()},
          "renew_at": {str(p): v for p, v in renewed.items()},
          "seconds": round(loop.time() - t0, 3)})
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m natftp.nat.discovery")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("discover", "recheck", "map"):
        p = sub.add_parser(name)
        p.add_argument("--sources", default=",".join(ALL_SOURCES))
        p.add_argument("--stun", action="append", default=[])
        p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
        p.add_argument("--gateway")
        p.add_argument("--metadata-endpoint", default="169.254.169.254")
        p.add_argument("-v", "--verbose", action="store_true")
        if name == "recheck":
            p.add_argument("--interval", type=float, default=1.0)
            p.add_argument("--duration", type=float, default=60.0)
        if name == "map":
            p.add_argument("--ports", required=True)
            p.add_argument("--protocols", default=",".join(DEFAULT_PROTOCOLS))
            p.add_argument("--lease", type=int, default=DEFAULT_LEASE)
            p.add_argument("--stop-timeout", type=float, default=10.0)
            p.add_argument("--control", help="ports mapped first and removed first")
            p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                           help="requests in flight at once for the other ports")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    if not a.verbose:
        logging.getLogger("async_upnp_client").setLevel(logging.WARNING)
    runner = {"discover": run_discover, "recheck": run_recheck, "map": run_map}[a.cmd]
    return asyncio.run(runner(a))


if __name__ == "__main__":
    sys.exit(main())
