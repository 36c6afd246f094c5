"""Open the router by itself (``nat.port_mapping = "auto"``, ``--open-router``).

:class:`PortMapper` asks the router for TCP mappings of the control port and every
passive port, external port = internal port, in the background: the server serves at
once and a passive port becomes usable when its mapping lands (``mapped_ports()``,
``on_change``). The first protocol that works is used for all ports: UPnP IGD, then PCP,
then NAT-PMP (configurable). Leases are renewed at half their life; :meth:`stop`
removes the mappings, waiting a bounded time (a real router takes ~0.25 s per port).
Every port's outcome is kept for the report; a refusal says what to do by hand.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from natftp.nat.discovery import natpmp, pcp
from natftp.nat.discovery.gateway import default_gateway, local_address_toward
from natftp.nat.discovery.upnp import UpnpGateway, describe_upnp_error

log = logging.getLogger("natftp.nat")

DEFAULT_PROTOCOLS = ("upnp", "pcp", "natpmp")
DEFAULT_LEASE = 3600
MANUAL_HINT = ("forward it by hand: `natftp firewall --router WAN_IF --server ADDR` "
               "prints the rules")


class State(enum.Enum):
    PENDING = "pending"
    MAPPED = "mapped"
    REFUSED = "refused"
    FAILED = "failed"
    REMOVED = "removed"
    LEFT = "left on router"


@dataclass
class PortResult:
    port: int
    state: State = State.PENDING
    protocol: str | None = None
    external_port: int | None = None
    #: lease granted, seconds (0 = permanent, None = not mapped)
    lease: int | None = None
    message: str = ""
    #: loop time at which the mapping should be renewed
    renew_at: float | None = None


class Refused(Exception):
    """The router answered and said no (as opposed to not answering)."""


class _Backend:
    name = ""

    async def open(self, timeout: float) -> None:
        raise NotImplementedError

    async def map(self, port: int, lease: int, timeout: float) -> tuple[int, int]:
        """-> (external port, lease granted)."""
        raise NotImplementedError

    async def unmap(self, port: int, timeout: float) -> None:
        raise NotImplementedError

    def where(self) -> str:
        return ""


class _Upnp(_Backend):
    name = "upnp"

    def __init__(self, description: str) -> None:
        self.gw: UpnpGateway | None = None
        self.description = description

    async def open(self, timeout: float) -> None:
        self.gw = await UpnpGateway.find(timeout)

    def where(self) -> str:
        return f"UPnP IGD {self.gw.location}" if self.gw else "UPnP"

    async def map(self, port: int, lease: int, timeout: float) -> tuple[int, int]:
        assert self.gw is not None
        try:
            granted = await self.gw.add_mapping(port, lease, f"{self.description} {port}",
                                                timeout)
        except Exception as e:
            text, code = describe_upnp_error(e)
            if code is not None:
                raise Refused(text) from e
            raise
        return port, granted

    async def unmap(self, port: int, timeout: float) -> None:
        assert self.gw is not None
        await self.gw.delete_mapping(port, timeout)


class _NatPmp(_Backend):
    name = "natpmp"

    def __init__(self, gateway: str | None) -> None:
        self.gateway = gateway

    def where(self) -> str:
        return f"NAT-PMP gateway {self.gateway}"

    async def open(self, timeout: float) -> None:
        self.gateway = self.gateway or default_gateway()
        if self.gateway is None:
            raise RuntimeError("no IPv4 default gateway")
        await natpmp.get_external_address(self.gateway, timeout)

    async def map(self, port: int, lease: int, timeout: float) -> tuple[int, int]:
        assert self.gateway is not None
        try:
            m = await natpmp.map_port(self.gateway, port, port, lease, timeout)
        except natpmp.NatPmpError as e:
            raise Refused(str(e)) from e
        return m.external_port, m.lifetime

    async def unmap(self, port: int, timeout: float) -> None:
        assert self.gateway is not None
        await natpmp.unmap_port(self.gateway, port, timeout)


class _Pcp(_Backend):
    name = "pcp"

    def __init__(self, gateway: str | None) -> None:
        self.gateway = gateway
        self.client = ""
        self.nonces: dict[int, bytes] = {}

    def where(self) -> str:
        return f"PCP gateway {self.gateway}"

    async def open(self, timeout: float) -> None:
        self.gateway = self.gateway or default_gateway()
        if self.gateway is None:
            raise RuntimeError("no IPv4 default gateway")
        self.client = local_address_toward(self.gateway, pcp.PORT)
        # probe: delete a mapping nobody has; any PCP answer, even an error result,
        # proves the protocol (UNSUPP_VERSION means the gateway only speaks NAT-PMP)
        try:
            await pcp.map_port(self.gateway, self.client, pcp.new_nonce(), 9, 0, 0,
                               timeout)
        except pcp.PcpError as e:
            if e.code in (None, 1):
                raise

    async def map(self, port: int, lease: int, timeout: float) -> tuple[int, int]:
        assert self.gateway is not None
        nonce = self.nonces.setdefault(port, pcp.new_nonce())  # renewals reuse it
        try:
            r = await pcp.map_port(self.gateway, self.client, nonce, port, port, lease,
                                   timeout)
        except pcp.PcpError as e:
            raise Refused(str(e)) from e
        return r.external_port, r.lifetime

    async def unmap(self, port: int, timeout: float) -> None:
        assert self.gateway is not None
        nonce = self.nonces.get(port)
        if nonce is None:
            return
        await pcp.map_port(self.gateway, self.client, nonce, port, 0, 0, timeout)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer"
    if isinstance(exc, Refused | natpmp.NatPmpError | pcp.PcpError | RuntimeError):
        return str(exc)
    if type(exc).__module__.startswith("async_upnp_client"):
        return describe_upnp_error(exc)[0]
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def ranges(ports: Iterable[int]) -> str:
    """[21, 30000, 30001, 30002] -> "21, 30000-30002"."""
    out: list[str] = []
    ps = sorted(set(ports))
    i = 0
    while i < len(ps):
        j = i
        while j + 1 < len(ps) and ps[j + 1] == ps[j] + 1:
            j += 1
        out.append(str(ps[i]) if i == j else f"{ps[i]}-{ps[j]}")
        i = j + 1
    return ", ".join(out)


class PortMapper:
    """Background port mapping for a set of TCP ports; see the module docstring."""

    def __init__(self, ports: Sequence[int], *, protocols: Sequence[str] = DEFAULT_PROTOCOLS,
                 lease: int = DEFAULT_LEASE, timeout: float = 3.0,
                 gateway: str | None = None, description: str = "natftp",
                 on_change: Callable[[PortResult], None] | None = None) -> None:
        if not ports:
            raise ValueError("no ports to map")
        bad = [p for p in ports if not 0 < p < 65536]
        if bad:
            raise ValueError(f"not TCP ports: {bad}")
        unknown = [p for p in protocols if p not in DEFAULT_PROTOCOLS]
        if unknown:
            raise ValueError(f"unknown mapping protocol(s) {unknown}; "
                             f"known: {', '.join(DEFAULT_PROTOCOLS)}")
        self.ports = list(dict.fromkeys(ports))
        self.protocols = tuple(protocols)
        self.lease = lease
        self.timeout = timeout
        self.gateway = gateway
        self.description = description
        self.on_change = on_change
        self.results = {p: PortResult(p) for p in self.ports}
        self.backend: _Backend | None = None
        #: (protocol, outcome) of the protocol selection
        self.tried: list[tuple[str, str]] = []
        self.first_pass = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what the server asks ------------------------------------------------------
    def mapped_ports(self) -> frozenset[int]:
        return frozenset(p for p, r in self.results.items() if r.state is State.MAPPED)

    def is_mapped(self, port: int) -> bool:
        r = self.results.get(port)
        return r is not None and r.state is State.MAPPED

    def report(self) -> list[str]:
        """Human lines: one per outcome, ports grouped into ranges."""
        lines: list[str] = []
        if self.backend is None and self.tried:
            lines.append("no port mapping protocol answered (tried "
                         + "; ".join(f"{n}: {o}" for n, o in self.tried)
                         + "); " + MANUAL_HINT.replace("forward it", "forward the ports"))
        groups: dict[tuple[State, str], list[int]] = {}
        for r in self.results.values():
            groups.setdefault((r.state, r.message), []).append(r.port)
        for (state, msg), ps in groups.items():
            lines.append(f"port {ranges(ps)}: {state.value}" + (f" ({msg})" if msg else ""))
        return lines

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Start mapping in the background; returns at once."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="natftp-port-mapper")
        return self._task

    async def wait_first_pass(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.first_pass.wait(), timeout)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop renewing and remove our mappings, giving up after ``timeout`` seconds
        (what is left expires with its lease; a permanent one needs removing by hand)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        backend = self.backend
        todo = [r for r in self.results.values() if r.state is State.MAPPED]
        if backend is None or not todo:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for r in todo:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(backend.unmap(r.port, min(self.timeout, left)),
                                       left)
            except Exception as e:  # noqa: BLE001 - reported per port
                r.message = f"removal failed: {_describe(e)}"
                continue
            r.state, r.renew_at = State.REMOVED, None
            r.message = ""
        left_over = [r for r in todo if r.state is State.MAPPED]
        for r in left_over:
            r.state = State.LEFT
            r.message = (f"expires by itself in {r.lease} s" if r.lease else
                         "permanent: remove it in the router's settings")
        if left_over:
            log.warning("port mapping: %d mapping(s) still on the router after %g s "
                        "(ports %s)", len(left_over), timeout,
                        ranges(r.port for r in left_over))
        else:
            log.info("port mapping: removed %d mapping(s) from %s", len(todo),
                     backend.where())

    # -- internals -----------------------------------------------------------------
    def _set(self, r: PortResult) -> None:
        if self.on_change is not None:
            self.on_change(r)

    async def _select(self) -> _Backend | None:
        for name in self.protocols:
            b: _Backend
            if name == "upnp":
                b = _Upnp(self.description)
            elif name == "pcp":
                b = _Pcp(self.gateway)
            else:
                b = _NatPmp(self.gateway)
            try:
                await asyncio.wait_for(b.open(self.timeout), self.timeout + 1)
            except Exception as e:  # noqa: BLE001 - try the next protocol
                self.tried.append((name, _describe(e)))
                continue
            self.tried.append((name, f"answered: {b.where()}"))
            return b
        return None

    async def _map_one(self, b: _Backend, r: PortResult) -> None:
        loop = asyncio.get_running_loop()
        try:
            ext, granted = await asyncio.wait_for(
                b.map(r.port, self.lease, self.timeout), self.timeout + 1)
        except Refused as e:
            r.state, r.message = State.REFUSED, f"router refused: {e}; {MANUAL_HINT}"
            r.renew_at = None
            log.warning("port mapping: %s refused port %d: %s; %s", b.where(), r.port, e,
                        MANUAL_HINT)
            self._set(r)
            return
        except Exception as e:  # noqa: BLE001 - reported per port, retried at renewal
            was_mapped = r.state is State.MAPPED
            r.message = f"{_describe(e)}" + (" (renewal)" if was_mapped else "")
            if not was_mapped:
                r.state = State.FAILED
            r.renew_at = loop.time() + min(60.0, max(5.0, self.lease / 4))
            self._set(r)
            return
        if ext != r.port:
            # PASV advertises the port we listen on: another external port is useless
            r.state = State.REFUSED
            r.message = (f"router offered external port {ext} instead of {r.port}; "
                         f"{MANUAL_HINT}")
            r.renew_at = None
            try:
                await b.unmap(r.port, self.timeout)
            except Exception:  # noqa: BLE001 - it expires with its lease
                pass
            self._set(r)
            return
        first = r.state is not State.MAPPED
        r.state, r.protocol, r.external_port, r.lease = State.MAPPED, b.name, ext, granted
        r.message = f"via {b.name}, lease {granted} s" if granted else f"via {b.name}, permanent"
        r.renew_at = loop.time() + granted / 2 if granted else None
        if first:
            self._set(r)

    async def _run(self) -> None:
        try:
            b = await self._select()
            if b is None:
                for r in self.results.values():
                    r.state, r.message = State.FAILED, "no port mapping protocol answered"
                log.warning("port mapping: %s", self.report()[0])
                return
            self.backend = b
            for r in self.results.values():
                await self._map_one(b, r)
            mapped = self.mapped_ports()
            log.info("port mapping via %s: %d of %d port(s) mapped%s", b.where(),
                     len(mapped), len(self.ports),
                     f" ({ranges(mapped)})" if mapped else "")
        finally:
            self.first_pass.set()
        await self._renew_forever(b)

    async def _renew_forever(self, b: _Backend) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = [r.renew_at for r in self.results.values() if r.renew_at is not None]
            if not due:
                return
            await asyncio.sleep(max(0.0, min(due) - loop.time()))
            now = loop.time()
            for r in self.results.values():
                if r.renew_at is not None and r.renew_at <= now:
                    await self._map_one(b, r)
