"""Zero-config NAT in ``natftp serve`` (issue 8): what :class:`~natftp.server.app.Server`
calls at start and stop. The machinery lives in ``natftp.nat.discovery``; this module
only decides what runs and says so in the log.

- ``nat.masquerade = "auto"`` (the default when serving beyond loopback): the server
  serves at once and discovers its public address **in the background**. A PASV before
  the first round ends (at most ``nat.discovery_timeout`` + 0.5 s) is told the local
  address, as without a masquerade. The result is re-checked every
  ``nat.recheck_interval`` seconds; every change is logged and the next PASV carries it.
- ``nat.port_mapping = "auto"`` (``--open-router``): the control port(s) and the whole
  passive range are mapped on the router in the background (control ports first,
  progress in the log), renewed before their leases end, and removed on a clean stop,
  control ports first, for as long as the router answers (``nat.mapping_stop_timeout``
  bounds a router that stopped answering; a second signal stops waiting). Passive
  ports whose mapping has landed are handed out first.

Loopback-only serving starts nothing here: no packet leaves the host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from natftp.nat.discovery import (
    DiscoveryConfig,
    DiscoveryResult,
    PortMapper,
    PortResult,
    State,
    auto_masquerade,
    import_clients,
    rechecker,
)
from natftp.nat.discovery.mapping import ranges

if TYPE_CHECKING:
    from natftp.server.app import Server
    from natftp.server.config import ServerConfig, ZeroconfConfig

log = logging.getLogger("natftp.nat")


def discovery_config(c: ZeroconfConfig) -> DiscoveryConfig:
    """The ``nat.*`` keys of one discovery round (serving, and ``serve --explain``)."""
    return DiscoveryConfig(sources=c.sources, stun_servers=c.stun_servers,
                           timeout=c.discovery_timeout)


def ports_to_forward(cfg: ServerConfig, control_ports: list[int] | None = None) -> list[int]:
    """The control port(s), then the passive range: what --open-router maps, and what
    must be forwarded by hand on a NAT natftp cannot ask (a second NAT)."""
    control = control_ports if control_ports is not None else [
        la.port for la in (*cfg.listen, *cfg.tls.listen_implicit)]
    pasv = cfg.passive_ports
    return [*dict.fromkeys(p for p in control if p),
            *(range(pasv[0], pasv[1] + 1) if pasv else ())]


class ZeroConf:
    """Background discovery and port mapping for one server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config.nat.zeroconf
        #: the first discovery round is still running (PASV tells the local address)
        self.pending = False
        self.mapper: PortMapper | None = None
        #: the ports named in the "second NAT" message (set by start)
        self.forward_ports: list[int] = []
        #: the last discovery round's result and when it ended (metrics, status page)
        self.result: DiscoveryResult | None = None
        self.result_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def active(self) -> bool:
        return self.config.discover or self.config.port_mapping

    def discovery_config(self) -> DiscoveryConfig:
        return discovery_config(self.config)

    def mappings(self) -> list[PortResult]:
        """Every port's mapping state (control ports first; ``expires`` is when its
        lease ends), for a status page; empty without ``--open-router``."""
        return self.mapper.snapshot() if self.mapper is not None else []

    def load_clients(self) -> None:
        """Import the UPnP and HTTP clients if this configuration will ask a router or
        the cloud: the server calls this before it drops privileges (the dropped user may
        not be able to read the Python installation), and so before the rounds start,
        not inside a round's time budget (~0.2 s with the loop blocked)."""
        if self.config.discover or self.config.port_mapping:
            import_clients()

    def start(self, control_ports: list[int]) -> None:
        """Start discovery and mapping in the background; returns at once."""
        c = self.config
        self.forward_ports = ports_to_forward(self.server.config, control_ports)
        self.load_clients()  # loaded already when the server started: a no-op then
        if c.discover:
            stun = (", ".join(c.stun_servers) if c.stun_servers
                    else "none configured (nat.stun_servers)")
            log.info("nat.masquerade auto (%s): discovering the public address in the "
                     "background (sources %s; STUN servers: %s; at most %g s); until "
                     "then PASV tells the local address", c.reason, ", ".join(c.sources),
                     stun, c.discovery_timeout)
            self.pending = True
            self._spawn(self._discover(), "natftp-discovery")
        else:
            log.debug("nat: no public-address discovery (%s)", c.reason)
        if c.port_mapping:
            assert self.server.config.passive_ports is not None  # the config says so
            ports = self.forward_ports
            self.mapper = PortMapper(ports, protocols=c.mapping_protocols,
                                     lease=c.mapping_lease,
                                     timeout=min(c.discovery_timeout, 5.0),
                                     on_change=self._on_port,
                                     control=[p for p in control_ports if p])
            self.server.pool.prefer = self.mapper.is_mapped
            log.info("nat.port_mapping auto: mapping %d port(s) (%s) on the router in the "
                     "background (protocols %s, lease %d s); serving already",
                     len(ports), ranges(ports), ", ".join(c.mapping_protocols),
                     c.mapping_lease)
            self.mapper.start()
            self._spawn(self._report_first_pass(self.mapper), "natftp-mapping-report")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.append(task)

    async def _discover(self) -> None:
        dc = self.discovery_config()
        try:
            self._record(await auto_masquerade(self.server.policy, dc, initial=True,
                                               forward_ports=self.forward_ports))
        finally:
            self.pending = False
        await rechecker(self.server.policy, dc, self.config.recheck_interval,
                        forward_ports=self.forward_ports, on_result=self._record)

    def _record(self, result: DiscoveryResult) -> None:
        self.result, self.result_at = result, time.time()

    def _on_port(self, r: PortResult) -> None:
        if r.state is State.MAPPED:
            log.debug("port mapping: port %d mapped (%s)", r.port, r.message)

    async def _report_first_pass(self, mapper: PortMapper) -> None:
        await mapper.wait_first_pass()
        for line in mapper.report():
            if "refused" in line or "failed" in line or line.startswith("no port"):
                log.warning("port mapping: %s", line)
            else:
                log.info("port mapping: %s", line)

    def hurry(self) -> None:
        """A second SIGINT/SIGTERM during stop: stop waiting for a slow router (what is
        left is reported with the time its lease ends)."""
        if self.mapper is not None:
            log.warning("port mapping: second signal: not waiting for the router any more")
            self.mapper.hurry()

    async def stop(self) -> None:
        """Stop the background tasks; remove the mappings (as long as the router
        answers; see :meth:`PortMapper.stop`)."""
        # cancelled again until they end: a cancellation that lands just as an inner
        # wait_for() completes can be lost (Python 3.11), and discovery would then go on
        # to sleep recheck_interval, holding the stop (seen: 1 stop in ~10 during
        # discovery hung until SIGKILL)
        pending = set(self._tasks)
        while pending:
            for t in pending:
                t.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        self._tasks.clear()
        mapper = self.mapper
        if mapper is not None:
            self.server.pool.prefer = None
            await mapper.stop(self.config.mapping_stop_timeout)
            self.mapper = None
            for line in mapper.report():
                log.info("port mapping at stop: %s", line)
