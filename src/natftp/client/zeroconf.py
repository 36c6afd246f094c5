"""Active mode behind a home router, by itself (issue 8; ``active_discover=True``,
``--active-discover``).

A client behind NAT that sends ``PORT <its private address>`` gets refused (bounce
protection) or never connected to. With ``active_discover`` the client, before its first
active transfer, asks the network for its public address (the same
:func:`natftp.nat.discovery.discover` the server uses: UPnP IGD, NAT-PMP, PCP, cloud
metadata, configured STUN servers) and asks the router to map one listening port
(:class:`~natftp.nat.discovery.PortMapper`), which it then listens on for every active
transfer of the session. The mapping is removed when the client closes (bounded wait).

Nothing is sent unless active mode is actually used, and never when the control
connection is on loopback or to a host on our side of any NAT (it can reach our local
address directly).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from natftp.nat.discovery import DiscoveryConfig, PortMapper, discover
from natftp.proto.addr import AddrClass, classify, ip

log = logging.getLogger("natftp.client")


@dataclass
class ActivePlan:
    """What to tell the server in EPRT/PORT and where to listen."""

    address: str  # advertised (public when discovery found one, else local)
    port: int  # the listening port (0: any, when nothing was mapped)
    note: str  # one line for the log / trace


class ActiveDiscovery:
    """Per-session: discovered once, the mapping kept until :meth:`close`."""

    def __init__(self, stun_servers: Sequence[str] = (), timeout: float = 3.0,
                 lease: int = 600) -> None:
        self.stun_servers = tuple(stun_servers)
        self.timeout = timeout
        self.lease = lease
        self.plan: ActivePlan | None = None
        self.mapper: PortMapper | None = None
        self._lock = asyncio.Lock()

    @staticmethod
    def needed(local: str, peer: str) -> bool:
        """Only when we are behind NAT as seen from this server: our local address is
        private/CGNAT and the server's is public."""
        lc, pc = classify(ip(local)), classify(ip(peer))
        inside = (AddrClass.PRIVATE, AddrClass.CGNAT)
        return ip(local).version == 4 and lc in inside and pc not in (
            *inside, AddrClass.LOOPBACK, AddrClass.LINK_LOCAL)

    async def prepare(self, local: str) -> ActivePlan:
        async with self._lock:
            if self.plan is None:
                self.plan = await self._prepare(local)
                log.info("active mode: %s", self.plan.note)
            return self.plan

    async def _prepare(self, local: str) -> ActivePlan:
        result = await discover(DiscoveryConfig(stun_servers=self.stun_servers,
                                                timeout=self.timeout))
        if result.address is None:
            return ActivePlan(local, 0, f"no public address found (tried "
                              f"{result.summary()}); telling the server {local}")
        port = _free_port(local)
        mapper = PortMapper([port], lease=self.lease, timeout=self.timeout,
                            description="natftp client")
        mapper.start()
        await mapper.wait_first_pass(self.timeout * 4 + 2)
        self.mapper = mapper
        state = "; ".join(mapper.report())
        if not mapper.is_mapped(port):
            # the address is right, but the router may still drop the connection: the
            # client's strategy fallback then moves on to passive mode
            return ActivePlan(str(result.address), port,
                              f"public address {result.address} (from {result.source}) "
                              f"but the router did not map port {port} ({state})")
        return ActivePlan(str(result.address), port,
                          f"public address {result.address} (from {result.source}); "
                          f"router maps port {port} to us ({state})")

    async def close(self, timeout: float = 5.0) -> None:
        mapper, self.mapper = self.mapper, None
        if mapper is not None:
            await mapper.stop(timeout)


def _free_port(local: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((local, 0))
        return int(s.getsockname()[1])
