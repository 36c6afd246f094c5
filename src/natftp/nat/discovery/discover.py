"""Find the public address by asking the network (``nat.masquerade = "auto"``).

Sources, in order of preference: UPnP IGD, NAT-PMP, PCP (the default gateway), cloud
metadata (AWS/GCP/Azure), STUN (configured servers only, none by default). They are all
asked at once, each bounded by ``timeout``.

Two answers are kept apart, because they serve different clients:

- the **router's WAN address** (UPnP, NAT-PMP, PCP), of any class: when it is private
  (the contest's router on 192.168.10.0/24, a home router behind the ISP's box, a
  company network) it is still the address every client on that WAN side reaches, and
  strictly better than the server's own LAN address;
- the **public address** (the router's when it is public, else the first public answer
  of cloud metadata or a configured STUN server): what public clients are told. When it
  differs from a private router address, a second NAT lies between, and the log says so.

:func:`discover` returns as soon as a public address is decided (behind a router with a
public WAN address: ~0.1 s), and never later than ``timeout`` (plus a little for
cleanup). An outside source (metadata, STUN) that answers a private address is recorded
and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from natftp.nat.discovery import metadata, natpmp, pcp, stun
from natftp.nat.discovery.gateway import default_gateway, local_address_toward
from natftp.nat.discovery.mapping import ranges
from natftp.nat.discovery.upnp import UpnpGateway, describe_upnp_error, import_clients
from natftp.nat.policy import AdvertisePolicy, Discovered
from natftp.proto.addr import AddrClass, IPAddress, classify, is_public

log = logging.getLogger("natftp.nat")

ALL_SOURCES = ("upnp", "natpmp", "pcp", "metadata", "stun")
#: the sources that ask the router itself: their answer is its WAN address, of any class
ROUTER_SOURCES = ("upnp", "natpmp", "pcp")
DEFAULT_TIMEOUT = 3.0
DEFAULT_RECHECK_INTERVAL = 300.0


@dataclass(frozen=True)
class DiscoveryConfig:
    """Plain parameters; the server maps its ``nat.*`` keys onto these."""

    #: sources to ask, in order of preference (a subset of ALL_SOURCES)
    sources: Sequence[str] = ALL_SOURCES
    #: ``nat.stun_servers``: "host", "host:port", "[v6]:port"; empty = STUN not used
    stun_servers: Sequence[str] = ()
    #: ``nat.discovery_timeout``: the bound on one whole discovery, in seconds
    timeout: float = DEFAULT_TIMEOUT
    #: the gateway for NAT-PMP/PCP; None = the IPv4 default route's gateway
    gateway: str | None = None
    #: where the cloud metadata service lives
    metadata_endpoint: str = metadata.DEFAULT_ENDPOINT

    def __post_init__(self) -> None:
        unknown = [s for s in self.sources if s not in ALL_SOURCES]
        if unknown:
            raise ValueError(f"unknown discovery source(s) {', '.join(unknown)}; "
                             f"known: {', '.join(ALL_SOURCES)}")
        if self.timeout <= 0:
            raise ValueError("discovery timeout must be positive")

    def load_clients(self) -> None:
        """Import the UPnP and HTTP clients if a source here uses them (UPnP, cloud
        metadata): discover() calls this before its clock starts, and so can a caller
        that times a round or is about to lose the right to import."""
        if {"upnp", "metadata"} & set(self.sources):
            import_clients()


@dataclass
class DiscoveryResult:
    #: the public address (what the internet sees us as), if any source told one
    address: IPAddress | None
    source: str | None
    #: (source, outcome) for every source in the configured order
    tried: list[tuple[str, str]] = field(default_factory=list)
    #: extra facts from the winning source (e.g. the IGD's description URL)
    detail: str = ""
    #: the router's WAN address (UPnP, NAT-PMP, PCP), private or public
    router: IPAddress | None = None
    router_source: str | None = None
    router_detail: str = ""

    @property
    def second_nat(self) -> bool:
        return self.discovered().second_nat

    def discovered(self) -> Discovered:
        """For :meth:`AdvertisePolicy.set_discovered`."""
        return Discovered(self.router, self.router_source or "", self.address,
                          self.source or "")

    def summary(self, only: Sequence[str] | None = None) -> str:
        return "; ".join(f"{s}: {o}" for s, o in self.tried if only is None or s in only)

    def _router_text(self) -> str:
        extra = f", {self.router_detail}" if self.router_detail else ""
        return f"{self.router} (from {self.router_source}{extra})"

    def message(self, timeout: float | None = None,
                forward_ports: Sequence[int] = ()) -> str:
        if self.address is not None:
            extra = f", {self.detail}" if self.detail else ""
            text = f"public address {self.address} (from {self.source}{extra})"
            if self.router is None or self.router == self.address:
                return text
            ports = (f"TCP port(s) {ranges(forward_ports)}" if forward_ports else
                     "the control port and the passive ports")
            return (f"{text}; the router's WAN address is {self._router_text()}, which is "
                    f"{classify(self.router).value}: a second NAT lies between the router "
                    f"and the internet. Public clients are told {self.address}, clients "
                    f"beyond this host's networks (the router's WAN side) {self.router}. "
                    f"On that second NAT (the one the internet sees as {self.address}), "
                    f"forward {ports} to {self.router}, the same port numbers")
        if self.router is not None:
            outside = self.summary([s for s, _ in self.tried if s not in ROUTER_SOURCES])
            return (f"router WAN address {self._router_text()}, which is "
                    f"{classify(self.router).value}: clients beyond this host's networks "
                    "(the router's WAN side) are told it; no source told a public address "
                    f"({outside or 'no metadata or stun source configured'}), so if another "
                    "NAT lies beyond the router, public clients need nat.stun_servers (or "
                    "nat.masquerade)")
        within = f" within {timeout:g} s" if timeout else ""
        return (f"no source told the public address{within} (tried {self.summary()}); "
                "PASV keeps the control connection's local address: set nat.masquerade "
                "to the public address or hostname")


class _Skip(Exception):
    """A source that was not asked, with the reason."""


class _NotPublic(Exception):
    def __init__(self, address: IPAddress) -> None:
        super().__init__(f"answered {address}, which is {classify(address).value}: "
                         "another NAT lies beyond")
        self.address = address


def _need_public(addr: IPAddress) -> IPAddress:
    if not is_public(addr):
        raise _NotPublic(addr)
    return addr


class _Unusable(Exception):
    def __init__(self, address: IPAddress) -> None:
        super().__init__(f"answered {address}, which is {classify(address).value}: no "
                         "WAN address to tell anyone")


def _need_usable(addr: IPAddress) -> IPAddress:
    """A router's WAN address may be private or CGNAT (its WAN side reaches it), but an
    unspecified (no WAN link yet), loopback or link-local answer helps nobody."""
    if classify(addr) not in (AddrClass.PUBLIC, AddrClass.PRIVATE, AddrClass.CGNAT):
        raise _Unusable(addr)
    return addr


def _gateway(config: DiscoveryConfig) -> str:
    gw = config.gateway or default_gateway()
    if gw is None:
        raise _Skip("no IPv4 default gateway")
    return gw


async def _upnp(config: DiscoveryConfig) -> tuple[IPAddress, str]:
    gw = await UpnpGateway.find(config.timeout)
    addr = await gw.external_address(config.timeout)
    return _need_usable(addr), f"IGD {gw.location}"


async def _natpmp(config: DiscoveryConfig) -> tuple[IPAddress, str]:
    gw = _gateway(config)
    ans = await natpmp.get_external_address(gw, config.timeout)
    return _need_usable(ans.address), f"gateway {gw}"


#: PCP has no "what is my address" request. Discovery first asks to delete a mapping
#: nobody has (harmless; some servers answer it with the external address); when the
#: answer is an error or carries no address, it maps a random high port for the
#: shortest lifetime and deletes it again with the same nonce.
PCP_PROBE_LIFETIME = 120


async def _pcp(config: DiscoveryConfig) -> tuple[IPAddress, str]:
    gw = _gateway(config)
    client = local_address_toward(gw, pcp.PORT)
    nonce = pcp.new_nonce()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.timeout
    port = random.randint(49152, 65535)
    resp: pcp.MapResponse | None = None
    try:
        resp = await pcp.map_port(gw, client, nonce, port, 0, 0, config.timeout)
    except pcp.PcpError as e:
        if e.code == 1:  # UNSUPP_VERSION: no PCP here
            raise
    if resp is None or classify(resp.external_address) is AddrClass.UNSPECIFIED:
        left = max(0.1, deadline - loop.time())
        resp = await pcp.map_port(gw, client, nonce, port, port, PCP_PROBE_LIFETIME, left)
        try:
            await pcp.map_port(gw, client, nonce, port, 0, 0,
                               max(0.5, deadline - loop.time()))
        except (OSError, pcp.PcpError):
            pass  # it expires by itself
    return _need_usable(resp.external_address), f"gateway {gw}"


async def _pcp_after(natpmp_task: asyncio.Future[tuple[IPAddress, str]],
                     config: DiscoveryConfig, started: float) -> tuple[IPAddress, str]:
    """PCP only when NAT-PMP did not answer: the same daemon usually speaks both, and
    PCP discovery may have to create (and delete) a probe mapping. A PCP-only router
    answers NAT-PMP at once with "unsupported version", so PCP then still has time."""
    await asyncio.wait([natpmp_task])
    if not natpmp_task.cancelled() and natpmp_task.exception() is None:
        raise _Skip("not needed (NAT-PMP answered)")
    left = config.timeout - (asyncio.get_running_loop().time() - started)
    if left <= 0.05:
        raise TimeoutError
    return await _pcp(replace(config, timeout=left))


async def _metadata(config: DiscoveryConfig) -> tuple[IPAddress, str]:
    addr, provider = await metadata.query(config.timeout, config.metadata_endpoint)
    return _need_public(addr), f"{provider} instance metadata"


async def _stun(config: DiscoveryConfig) -> tuple[IPAddress, str]:
    if not config.stun_servers:
        raise _Skip("no servers configured (nat.stun_servers)")
    tasks = {asyncio.ensure_future(stun.query(s, config.timeout)): s
             for s in config.stun_servers}
    errors: list[str] = []
    first_private: BaseException | None = None
    try:
        for server in config.stun_servers:  # in the configured order
            task = next(t for t, s in tasks.items() if s == server)
            try:
                mapped = await task
            except Exception as e:  # noqa: BLE001 - each server's failure is reported
                errors.append(f"{server}: {_describe(e)}")
                continue
            try:
                return _need_public(mapped.address), f"STUN server {server}"
            except _NotPublic as e:
                first_private = first_private or e
                errors.append(f"{server}: {e}")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if first_private is not None and len(config.stun_servers) == 1:
        raise first_private
    raise RuntimeError("; ".join(errors))


SOURCES: dict[str, Callable[[DiscoveryConfig], Awaitable[tuple[IPAddress, str]]]] = {
    "upnp": _upnp, "natpmp": _natpmp, "pcp": _pcp, "metadata": _metadata, "stun": _stun,
}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Skip | _NotPublic | _Unusable | metadata.MetadataError | natpmp.NatPmpError
                  | pcp.PcpError | stun.StunError):
        return str(exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer"
    if isinstance(exc, ConnectionRefusedError):
        return "refused (port unreachable: nothing listens)"
    if isinstance(exc, RuntimeError):
        return str(exc)
    if type(exc).__module__.startswith("async_upnp_client"):
        return describe_upnp_error(exc)[0]
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


async def discover(config: DiscoveryConfig | None = None, *,
                   on_router: Callable[[IPAddress, str], None] | None = None
                   ) -> DiscoveryResult:
    """Ask every configured source at once; see the module docstring for what is kept.

    Returns within ``config.timeout`` (each source is bounded by it, and the whole is
    cut off at it plus half a second for cleanup). Never raises for a source's failure:
    each one's outcome is in ``tried``. ``on_router(address, source)`` is called as soon
    as the router told a private WAN address while the outside sources are still asked,
    so a caller can use it at once.
    """
    config = config or DiscoveryConfig()
    config.load_clients()  # before the clock starts
    loop = asyncio.get_running_loop()
    started = loop.time()
    order = list(dict.fromkeys(config.sources))
    tasks: dict[str, asyncio.Future[tuple[IPAddress, str]]] = {}
    for name in order:
        if name == "pcp" and "natpmp" in tasks:
            tasks[name] = asyncio.ensure_future(_pcp_after(tasks["natpmp"], config, started))
        else:
            tasks[name] = asyncio.ensure_future(SOURCES[name](config))
    outcomes: dict[str, str] = {}
    router: tuple[str, IPAddress, str] | None = None
    public: tuple[str, IPAddress, str] | None = None
    try:
        for name in order:
            if public is not None:
                break
            if name in ROUTER_SOURCES and router is not None:
                continue  # a preferred router source answered: the rest are not needed
            left = config.timeout + 0.5 - (loop.time() - started)
            task = tasks[name]
            try:
                addr, detail = await asyncio.wait_for(asyncio.shield(task), max(left, 0.01))
            except Exception as e:  # noqa: BLE001 - reported per source
                if isinstance(e, TimeoutError) and not task.done():
                    outcomes[name] = "no answer"
                else:
                    outcomes[name] = _describe(e)
                continue
            if name in ROUTER_SOURCES:
                router = (name, addr, detail)
                if is_public(addr):
                    public = router
                    outcomes[name] = f"answered {addr}"
                else:
                    outcomes[name] = (f"answered {addr}, which is {classify(addr).value}: "
                                      "the router's WAN side is a private network")
                    if on_router is not None:
                        on_router(addr, name)
            else:
                public = (name, addr, detail)
                outcomes[name] = f"answered {addr}"
    finally:
        for name, task in tasks.items():
            if not task.done():
                task.cancel()
                outcomes.setdefault(name, "not needed (a preferred source answered)")
            elif name not in outcomes:
                outcomes[name] = "not needed (a preferred source answered)"
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    tried = [(n, outcomes[n]) for n in order]
    result = DiscoveryResult(None, None, tried)
    if public is not None:
        result.source, result.address, result.detail = public
    if router is not None:
        result.router_source, result.router, result.router_detail = router
    return result


async def auto_masquerade(policy: AdvertisePolicy, config: DiscoveryConfig | None = None,
                          *, initial: bool = True, forward_ports: Sequence[int] = ()
                          ) -> DiscoveryResult:
    """One discovery round applied to ``policy``, with the log lines an admin needs.

    At start (``initial``) it logs what was found or what was tried; later rounds log
    only changes and failures after a success (the last good answer is kept; a public
    address a STUN server told last time is kept while the router's is unchanged and
    this round's STUN answer was lost). ``forward_ports`` are named in the "second NAT"
    message: what must be forwarded on it by hand.
    """
    config = config or DiscoveryConfig()
    before = policy.discovered

    def early(address: IPAddress, source: str) -> None:
        # the router's private WAN address beats the local one while STUN is asked
        if policy.discovered is None:
            policy.set_discovered(Discovered(address, source))

    t0 = time.monotonic()
    result = await discover(config, on_router=early if initial else None)
    took = time.monotonic() - t0
    found = result.discovered()
    if found.router is None and found.public is None:
        if initial:
            log.warning("nat.masquerade auto: %s", result.message(config.timeout))
        elif before is not None:
            log.warning("nat.masquerade auto: re-check found nothing (tried %s); keeping "
                        "%s", result.summary(), before.describe())
        return result
    if (before is not None and found.public is None and before.public is not None
            and found.router == before.router):
        found = replace(found, public=before.public, public_source=before.public_source)
    if not policy.set_discovered(found) and before is not None:
        return result
    if before is None:
        level = logging.WARNING if found.second_nat else logging.INFO
        log.log(level, "nat.masquerade auto: %s (in %.1f s)",
                result.message(forward_ports=forward_ports), took)
        return result
    if found.public is not None and found.public != before.public:
        log.warning("nat.masquerade auto: public address changed to %s (was %s; from %s)",
                    found.public, before.public or "none", found.public_source)
    if (found.router is not None and found.router != found.public
            and found.router != before.router):
        log.warning("nat.masquerade auto: router WAN address changed to %s (was %s; from "
                    "%s)", found.router, before.router or "none", found.router_source)
    if found.second_nat and not before.second_nat:
        log.warning("nat.masquerade auto: %s", result.message(forward_ports=forward_ports))
    return result


async def rechecker(policy: AdvertisePolicy, config: DiscoveryConfig | None = None,
                    interval: float = DEFAULT_RECHECK_INTERVAL, *,
                    first_now: bool = False, forward_ports: Sequence[int] = (),
                    on_result: Callable[[DiscoveryResult], None] | None = None) -> None:
    """Re-discover forever every ``interval`` seconds (``nat.recheck_interval``) and
    update ``policy``; cancel the task to stop it. The caller normally awaits
    :func:`auto_masquerade` once at start and then runs this with ``first_now=False``.
    ``on_result`` sees each round's result (the server's metrics and status page)."""
    if not first_now:
        await asyncio.sleep(interval)
    while True:
        result = await auto_masquerade(policy, config, initial=False,
                                       forward_ports=forward_ports)
        if on_result is not None:
            on_result(result)
        await asyncio.sleep(interval)
