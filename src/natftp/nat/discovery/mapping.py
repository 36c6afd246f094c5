"""Open the router by itself (``nat.port_mapping = "auto"``, ``--open-router``).

:class:`PortMapper` asks the router for TCP mappings of the control port and every
passive port, external port = internal port, in the background: the server serves at
once and a passive port becomes usable when its mapping lands (``mapped_ports()``,
``on_change``). The first protocol that works is used for all ports: UPnP IGD, then PCP,
then NAT-PMP (configurable). Leases are renewed at half their life. Every port's outcome
is kept for the report; a refusal says what to do by hand.

Routers are slow, and some are very slow: Debian's miniupnpd rewrites its nftables
chains on every request, and with its debug log on it takes ~35 s for 101 mappings
(docs/zeroconf.md has the figures). Hence:

- the control ports go first, each alone, and are removed first at stop (the door
  opens first and closes first); through UPnP the passive ports then go ``window``
  requests at a time (pipelined: each request is an HTTP connection of its own, whose
  set-up overlaps with the router's work: ~30% faster on miniupnpd); NAT-PMP and PCP
  requests go one at a time (pipelining them measured no faster on a serial router);
- progress is logged every :data:`PROGRESS_EVERY` seconds while it lasts;
- :meth:`PortMapper.stop` keeps removing while the router answers: its ``timeout``
  bounds a router that stopped answering (no answer at all for that long), not a slow
  one; what is left is reported with the time its lease ends;
- NAT-PMP/PCP requests retransmit after twice the router's recent answer time (at least
  RFC 6886's 250 ms), so a slow router is not made to do each mapping twice.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from natftp.nat.discovery import natpmp, pcp
from natftp.nat.discovery.gateway import default_gateway, local_address_toward
from natftp.nat.discovery.upnp import UpnpGateway, describe_upnp_error, import_clients

log = logging.getLogger("natftp.nat")

DEFAULT_PROTOCOLS = ("upnp", "pcp", "natpmp")
DEFAULT_LEASE = 3600
#: requests in flight at once for the passive ports (measured: docs/zeroconf.md)
DEFAULT_WINDOW = 4
#: seconds between two progress lines of a long mapping or removal
PROGRESS_EVERY = 5.0
#: requests per port at stop before giving up on that port (the router answering others)
STOP_ATTEMPTS = 3
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
    #: a map request went out: the router may hold this mapping even without an answer
    requested: bool = False
    #: wall-clock time (time.time()) the router's lease ends, as far as we know (None:
    #: permanent, or never asked for)
    expires: float | None = None


class Refused(Exception):
    """The router answered and said no (as opposed to not answering)."""


class Gone(Exception):
    """The router answered that it holds no such mapping (a removal already done)."""


class _Backend:
    name = ""
    #: the first retransmission delay for UDP protocols (see the module docstring)
    first_rto = 0.25
    #: whether requests go ``window`` at a time (UPnP: each request is its own HTTP
    #: connection, whose set-up overlaps; NAT-PMP/PCP: one at a time, measured faster on
    #: a serial router: docs/zeroconf.md)
    pipelined = False

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
    pipelined = True

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
        try:
            await self.gw.delete_mapping(port, timeout)
        except Exception as e:
            text, code = describe_upnp_error(e)
            if code == 714:
                raise Gone(text) from e
            if code is not None:
                raise Refused(text) from e
            raise


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
            m = await natpmp.map_port(self.gateway, port, port, lease, timeout,
                                      first_rto=self.first_rto)
        except natpmp.NatPmpError as e:
            raise Refused(str(e)) from e
        return m.external_port, m.lifetime

    async def unmap(self, port: int, timeout: float) -> None:
        assert self.gateway is not None
        try:
            await natpmp.unmap_port(self.gateway, port, timeout, first_rto=self.first_rto)
        except natpmp.NatPmpError as e:
            raise Refused(str(e)) from e


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
                                   timeout, first_rto=self.first_rto)
        except pcp.PcpError as e:
            raise Refused(str(e)) from e
        return r.external_port, r.lifetime

    async def unmap(self, port: int, timeout: float) -> None:
        assert self.gateway is not None
        nonce = self.nonces.get(port)
        if nonce is None:
            return
        try:
            await pcp.map_port(self.gateway, self.client, nonce, port, 0, 0, timeout,
                               first_rto=self.first_rto)
        except pcp.PcpError as e:
            raise Refused(str(e)) from e


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer"
    if isinstance(exc, Refused | Gone | natpmp.NatPmpError | pcp.PcpError | RuntimeError):
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


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def lease_end(results: Sequence[PortResult], now: float | None = None) -> str:
    """When the router drops these mappings by itself: "their lease ends at 2026-12-03
    15:04:05 (in 3580 s)", a span when they differ, and a note for permanent ones."""
    now = time.time() if now is None else now
    ends = sorted(r.expires for r in results if r.expires is not None)
    permanent = len(ends) < len(results)
    parts = []
    if ends:
        first, last = ends[0], ends[-1]
        when = (f"at {_clock(first)}" if last - first < 1 else
                f"between {_clock(first)} and {_clock(last)}")
        parts.append(f"their lease ends {when} (in {max(0, int(last - now))} s)")
    if permanent:
        parts.append("some are permanent: remove them in the router's settings")
    return "; ".join(parts)


class PortMapper:
    """Background port mapping for a set of TCP ports; see the module docstring.

    ``control``: ports (among ``ports``) mapped first and removed first, each alone.
    ``window``: requests in flight at once for the other ports.
    """

    def __init__(self, ports: Sequence[int], *, protocols: Sequence[str] = DEFAULT_PROTOCOLS,
                 lease: int = DEFAULT_LEASE, timeout: float = 3.0,
                 gateway: str | None = None, description: str = "natftp",
                 on_change: Callable[[PortResult], None] | None = None,
                 control: Sequence[int] = (), window: int = DEFAULT_WINDOW) -> None:
        if not ports:
            raise ValueError("no ports to map")
        bad = [p for p in ports if not 0 < p < 65536]
        if bad:
            raise ValueError(f"not TCP ports: {bad}")
        unknown = [p for p in protocols if p not in DEFAULT_PROTOCOLS]
        if unknown:
            raise ValueError(f"unknown mapping protocol(s) {unknown}; "
                             f"known: {', '.join(DEFAULT_PROTOCOLS)}")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.ports = list(dict.fromkeys(ports))
        stray = [p for p in control if p not in self.ports]
        if stray:
            raise ValueError(f"control port(s) {stray} are not among the ports to map")
        self.control = tuple(dict.fromkeys(control))
        self.protocols = tuple(protocols)
        self.lease = lease
        self.timeout = timeout
        self.gateway = gateway
        self.description = description
        self.on_change = on_change
        self.window = window
        self.results = {p: PortResult(p) for p in self.ports}
        self.backend: _Backend | None = None
        #: (protocol, outcome) of the protocol selection
        self.tried: list[tuple[str, str]] = []
        self.first_pass = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: set by hurry(): stop removing now (a second signal)
        self._hurry = asyncio.Event()
        #: smoothed seconds from request to answer (for the UDP retransmission delay)
        self._latency: float | None = None

    # -- what the server asks ------------------------------------------------------
    def mapped_ports(self) -> frozenset[int]:
        return frozenset(p for p, r in self.results.items() if r.state is State.MAPPED)

    def is_mapped(self, port: int) -> bool:
        r = self.results.get(port)
        return r is not None and r.state is State.MAPPED

    def snapshot(self) -> list[PortResult]:
        """A copy of every port's state, in the order given: for a status page."""
        return [PortResult(**vars(r)) for r in self.results.values()]

    def report(self) -> list[str]:
        """Human lines: one per outcome, ports grouped into ranges."""
        lines: list[str] = []
        if self.backend is None and self.tried:
            lines.append("no port mapping protocol answered (tried "
                         + "; ".join(f"{n}: {o}" for n, o in self.tried)
                         + "); " + MANUAL_HINT.replace("forward it", "forward the ports"))
        groups: dict[tuple[State, str], list[int]] = {}
        left: list[PortResult] = []
        for r in self.results.values():
            if r.state is State.LEFT:
                left.append(r)
                continue
            groups.setdefault((r.state, r.message), []).append(r.port)
        for (state, msg), ps in groups.items():
            lines.append(f"port {ranges(ps)}: {state.value}" + (f" ({msg})" if msg else ""))
        if left:
            lines.append(f"port {ranges(r.port for r in left)}: {State.LEFT.value} "
                         f"({lease_end(left)})")
        return lines

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Start mapping in the background; returns at once."""
        if self._task is None:
            import_clients()  # not inside the first pass's time
            self._task = asyncio.create_task(self._run(), name="natftp-port-mapper")
        return self._task

    async def wait_first_pass(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.first_pass.wait(), timeout)

    def hurry(self) -> None:
        """Stop removing at once (a second SIGINT/SIGTERM): :meth:`stop` then reports
        what is left instead of waiting for a slow router."""
        self._hurry.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop mapping and renewing, and remove every mapping of ours, control ports
        first. ``timeout`` bounds a router that stopped answering: removal goes on as
        long as some answer arrived within the last ``timeout`` seconds, however slow the
        router is. What is left is logged with the time its lease ends."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        backend = self.backend
        # a request still in flight when mapping was cancelled may have landed: remove
        # those too (the router answers "no such mapping" when it did not)
        todo = [r for r in self.results.values() if r.state is State.MAPPED or (
            r.requested and r.state in (State.PENDING, State.FAILED))]
        if backend is None or not todo:
            return
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        why = ""
        removal = asyncio.ensure_future(self._remove_all(backend, todo, timeout))
        hurry = asyncio.ensure_future(self._hurry.wait())
        progress = asyncio.ensure_future(self._progress(
            lambda: (f"port mapping at stop: removed {self._count(todo, State.REMOVED)} of "
                     f"{len(todo)} mapping(s) so far ({loop.time() - t0:.0f} s; the router "
                     f"still answers, so removal goes on until it has not answered for "
                     f"{timeout:g} s)")))
        try:
            await asyncio.wait([removal, hurry], return_when=asyncio.FIRST_COMPLETED)
            if not removal.done():
                why = "stopped early (a second signal)"
                removal.cancel()
            else:
                why = removal.result()
        finally:
            for t in (removal, hurry, progress):
                t.cancel()
            await asyncio.gather(removal, hurry, progress, return_exceptions=True)
        took = loop.time() - t0
        left_over = [r for r in todo if r.state is not State.REMOVED]
        for r in left_over:
            r.state, r.renew_at = State.LEFT, None
        if left_over:
            log.warning("port mapping: %d of %d mapping(s) could not be removed from %s "
                        "(%s; after %.1f s): port %s; %s", len(left_over), len(todo),
                        backend.where(), why or "the router refused", took,
                        ranges(r.port for r in left_over), lease_end(left_over))
        else:
            log.info("port mapping: removed %d mapping(s) from %s in %.1f s", len(todo),
                     backend.where(), took)

    # -- internals -----------------------------------------------------------------
    @staticmethod
    def _count(results: Iterable[PortResult], state: State) -> int:
        return sum(1 for r in results if r.state is state)

    def _set(self, r: PortResult) -> None:
        if self.on_change is not None:
            self.on_change(r)

    def _answered(self, seconds: float) -> None:
        """A request was answered after ``seconds``: adapt the retransmission delay."""
        lat = seconds if self._latency is None else 0.7 * self._latency + 0.3 * seconds
        self._latency = lat
        if self.backend is not None:
            # never below RFC 6886's 250 ms; never so close to the bound that a request
            # waiting in the router's queue is sent twice
            self.backend.first_rto = max(0.25, min(2 * lat, self._bound() / 2))

    async def _progress(self, line: Callable[[], str]) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            log.info("%s", line())

    async def _pipeline(self, results: Sequence[PortResult],
                        job: Callable[[PortResult], Awaitable[None]]) -> None:
        """``job`` for each result: the control ports first, each alone, then the rest
        ``window`` at a time (one at a time for a protocol that gains nothing from it),
        started in order."""
        first = [r for r in results if r.port in self.control]
        rest = iter([r for r in results if r.port not in self.control])
        for r in first:
            await job(r)

        async def worker() -> None:
            for r in rest:  # a shared iterator: each result is taken once, in order
                await job(r)

        width = self.window if self.backend is not None and self.backend.pipelined else 1
        await asyncio.gather(*(worker() for _ in range(width)))

    async def _remove_all(self, b: _Backend, todo: list[PortResult], silence: float) -> str:
        """Remove ``todo``; returns why it stopped short ("" when nothing is left).

        A request that gets no answer while the router answers others is waiting in the
        router's queue: it is sent again, uncounted. Other failures count, at most
        :data:`STOP_ATTEMPTS` per port. Nothing answered for ``silence`` seconds ends
        it all."""
        loop = asyncio.get_running_loop()
        last_answer = loop.time()
        dead = False

        async def remove(r: PortResult) -> None:
            nonlocal last_answer, dead
            attempts = 0
            while not dead and attempts < STOP_ATTEMPTS:
                sent = loop.time()
                bound = max(self._bound(), silence)
                try:
                    await asyncio.wait_for(b.unmap(r.port, bound), bound)
                except Gone:
                    pass  # nothing of ours there (a request that never landed, or a retry)
                except Refused as e:
                    last_answer = loop.time()
                    r.message = f"removal refused: {e}"
                    attempts += 1
                    continue
                except Exception as e:  # noqa: BLE001 - no answer, or no connection
                    r.message = f"removal failed: {_describe(e)}"
                    if loop.time() - last_answer >= silence:
                        dead = True
                    elif not isinstance(e, TimeoutError):
                        attempts += 1
                    continue
                last_answer = loop.time()
                self._answered(last_answer - sent)
                r.state, r.renew_at, r.message = State.REMOVED, None, ""
                return

        await self._pipeline(todo, remove)
        if dead:
            return f"the router stopped answering: nothing for {silence:g} s"
        if any(r.state is not State.REMOVED for r in todo):
            return f"the router refused or failed them, {STOP_ATTEMPTS} attempts each"
        return ""

    def _bound(self) -> float:
        """How long one request may wait for its answer: the configured timeout, or
        eight times the router's recent answer time when that is longer (a slow router
        with a queue of our requests, on a loaded machine; at most 30 s)."""
        if self._latency is None:
            return self.timeout
        return max(self.timeout, min(30.0, 8 * self._latency))

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
        r.requested = True
        if r.state is not State.MAPPED:
            # as far as we know, from now on, until an answer says otherwise
            r.expires = time.time() + self.lease if self.lease else None
        sent = loop.time()
        bound = self._bound()
        try:
            ext, granted = await asyncio.wait_for(
                b.map(r.port, self.lease, bound), bound + 1)
        except Refused as e:
            self._answered(loop.time() - sent)
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
        self._answered(loop.time() - sent)
        if ext != r.port:
            # PASV advertises the port we listen on: another external port is useless
            r.state = State.REFUSED
            r.message = (f"router offered external port {ext} instead of {r.port}; "
                         f"{MANUAL_HINT}")
            r.renew_at = None
            try:
                await b.unmap(r.port, self.timeout)
                r.requested = False
            except Exception:  # noqa: BLE001 - it expires with its lease
                pass
            self._set(r)
            return
        first = r.state is not State.MAPPED
        r.state, r.protocol, r.external_port, r.lease = State.MAPPED, b.name, ext, granted
        r.message = f"via {b.name}, lease {granted} s" if granted else f"via {b.name}, permanent"
        r.renew_at = loop.time() + granted / 2 if granted else None
        r.expires = time.time() + granted if granted else None
        if first:
            self._set(r)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        progress: asyncio.Task[None] | None = None
        try:
            b = await self._select()
            if b is None:
                for r in self.results.values():
                    r.state, r.message = State.FAILED, "no port mapping protocol answered"
                log.warning("port mapping: %s", self.report()[0])
                return
            self.backend = b
            results = list(self.results.values())
            progress = asyncio.create_task(self._progress(
                lambda: (f"port mapping via {b.where()}: {len(self.mapped_ports())} of "
                         f"{len(self.ports)} port(s) mapped so far ({loop.time() - t0:.0f} "
                         "s; the mapped ones serve already)")))
            await self._pipeline(results, lambda r: self._map_one(b, r))
            # a request that got no answer while the router answered the others waited
            # in its queue (it may even have landed): ask once more now, not a minute later
            again = [r for r in results if r.state is State.FAILED]
            if again and self.mapped_ports():
                await self._pipeline(again, lambda r: self._map_one(b, r))
            mapped = self.mapped_ports()
            log.info("port mapping via %s: %d of %d port(s) mapped%s in %.1f s", b.where(),
                     len(mapped), len(self.ports),
                     f" ({ranges(mapped)})" if mapped else "", loop.time() - t0)
        finally:
            if progress is not None:
                progress.cancel()
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
            await self._pipeline([r for r in self.results.values()
                                  if r.renew_at is not None and r.renew_at <= now],
                                 lambda r: self._map_one(b, r))
