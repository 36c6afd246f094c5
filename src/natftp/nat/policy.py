"""Which address a client is told in a 227 reply, decided per client and connection.

Pure: no sockets, no clock, no DNS. A masquerade *hostname* is resolved by the I/O layer
(see ``nat/resolver.py``), which hands the answers to :meth:`AdvertisePolicy.update`;
zero-config discovery (``nat/discovery``) hands what the router and the configured STUN
servers told to :meth:`AdvertisePolicy.set_discovered`.

The classes of client, and what each is told:

============================  ==============================================================
client                        told
============================  ==============================================================
in an override's networks     the override's address
loopback, link-local, or a    the server's own address on that connection (it reaches it)
private/CGNAT address on one
of the server's networks
anyone else, when             the configured address (``nat.masquerade``, or what its
nat.masquerade is set         hostname resolves to)
private/CGNAT, beyond the     the router's WAN address as discovered, **even when it is
server's networks (e.g. the   private** (it is the address that side reaches: scenario S1)
router's WAN side)
public                        the public address: a STUN/metadata answer when it differs
                              from the router's private WAN address (a second NAT lies
                              between), else the router's WAN address (flagged when it is
                              private: the client probably cannot reach it)
nothing known                 the local address (flagged when a public client is told a
                              private one, so the server warns once)
============================  ==============================================================
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from natftp.proto.addr import AddrClass, IPAddress, classify, ip, is_public

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_INSIDE = (AddrClass.PRIVATE, AddrClass.LOOPBACK, AddrClass.LINK_LOCAL, AddrClass.CGNAT)


@dataclass(frozen=True, slots=True)
class Override:
    """Clients in ``networks`` are told ``address``."""

    networks: tuple[IPNetwork, ...]
    address: IPAddress

    @classmethod
    def parse(cls, networks: Iterable[str], address: str) -> Override:
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks), ip(address))

    def matches(self, peer: IPAddress) -> bool:
        return any(peer.version == n.version and peer in n for n in self.networks)


class Rule(enum.Enum):
    """Which rule of the policy decided (for status pages and tests; the sentence is in
    :attr:`Decision.reason`)."""

    OVERRIDE = "override"
    LOCAL = "local address"
    MASQUERADE = "masquerade"
    ROUTER_WAN = "router WAN address"
    PUBLIC = "public address"
    FALLBACK = "local address (nothing else known)"


@dataclass(frozen=True, slots=True)
class Decision:
    """The address to advertise and a human sentence saying why (for logs and --explain).

    ``warn_unreachable``: a public client is told an address it most likely cannot reach
    (the server logs it once per client network, with ``reason``)."""

    address: IPAddress
    reason: str
    warn_unreachable: bool = False
    rule: Rule = Rule.FALLBACK


@dataclass(frozen=True, slots=True)
class Discovered:
    """What zero-config discovery found (``nat.masquerade = "auto"``).

    ``router``: the WAN address the router told (UPnP, NAT-PMP, PCP), of any class, so
    a router whose WAN side is itself a private network still helps the clients on that
    side. ``public``: an address the internet sees us as (the router's, when it is
    public; else a STUN server's or the cloud metadata's answer). Either may be None.
    """

    router: IPAddress | None = None
    router_source: str = ""
    public: IPAddress | None = None
    public_source: str = ""

    @property
    def second_nat(self) -> bool:
        """Whether another NAT lies between the router and the internet: the public
        address seen from outside is not the router's WAN address."""
        return (self.router is not None and self.public is not None
                and self.router != self.public)

    def describe(self) -> str:
        """One phrase for logs and --explain."""
        parts = []
        if self.router is not None:
            kind = "" if is_public(self.router) else f", {classify(self.router).value}"
            parts.append(f"router WAN address {self.router} (from {self.router_source}"
                         f"{kind})")
        if self.public is not None and self.public != self.router:
            parts.append(f"public address {self.public} (from {self.public_source})")
        return "; ".join(parts) or "nothing found"


@dataclass(frozen=True, slots=True)
class ClientClass:
    """A class of client, with a representative address (``serve --explain``, status)."""

    label: str
    sample: IPAddress


@dataclass(frozen=True, slots=True)
class ClassDecision:
    """What one class of client is told: ``decision`` (None when refused or when there
    is no route to the class), ``local`` the server's address toward it, ``note`` why
    there is no decision."""

    client: ClientClass
    local: IPAddress | None
    decision: Decision | None
    note: str = ""


class NoUsableAddress(Exception):
    """Nothing but an unspecified address is known: refuse PASV rather than lie."""


@dataclass
class AdvertisePolicy:
    """Per-client choice of the passive address.

    Order: the first matching override; then, for a client on our side of any NAT
    (loopback, link-local, or a private/CGNAT address on one of ``local_networks``), the
    server's own local address on that connection; then the masquerade address when one
    is known; else the local address (flagged, when a public client sees a private local
    address, so the server can warn that ``nat.masquerade`` is missing).
    """

    masquerade: str | None = None
    overrides: Sequence[Override] = ()
    #: networks the server is attached to; None means "treat every private client as
    #: local" (only for callers that cannot know, e.g. pure tests of other rules).
    local_networks: Sequence[IPNetwork] | None = None
    #: what discovery found (nat.masquerade = "auto"); a configured masquerade wins
    discovered: Discovered | None = None
    _masq_ips: tuple[IPAddress, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.masquerade is not None:
            try:
                self._masq_ips = (ip(self.masquerade),)
            except ValueError:
                self._masq_ips = ()  # a hostname: filled in by update()

    @property
    def masquerade_is_hostname(self) -> bool:
        if self.masquerade is None:
            return False
        try:
            ip(self.masquerade)
        except ValueError:
            return True
        return False

    @property
    def masquerade_addresses(self) -> tuple[IPAddress, ...]:
        return self._masq_ips

    def update(self, addresses: Iterable[IPAddress]) -> bool:
        """Install freshly resolved masquerade addresses; returns True if they changed.

        An empty answer keeps the last good one (a DNS outage must not break PASV).
        """
        new = tuple(ip(a) for a in addresses if classify(ip(a)) is not AddrClass.UNSPECIFIED)
        if not new or new == self._masq_ips:
            return False
        self._masq_ips = new
        return True

    def set_discovered(self, found: Discovered) -> bool:
        """Install what discovery found; returns True if it changed. A round that found
        nothing at all keeps the last good answer (a router rebooting must not break
        PASV); a round that found part of it replaces the whole."""
        if found.router is None and found.public is None:
            return False
        for a in (found.router, found.public):
            if a is not None and classify(a) is AddrClass.UNSPECIFIED:
                raise ValueError(f"discovery cannot install the unspecified address {a}")
        if found == self.discovered:
            return False
        self.discovered = found
        return True

    def set_masquerade(self, masquerade: str | None) -> None:
        """A new ``nat.masquerade`` (SIGHUP): an address applies at once, a hostname's
        addresses come from the next :meth:`update`, None removes it."""
        self.masquerade = masquerade
        self._masq_ips = ()
        self.__post_init__()

    def _masq_for(self, family: int) -> IPAddress | None:
        for a in self._masq_ips:
            if a.version == family:
                return a
        return None

    def is_inside(self, peer: IPAddress) -> bool:
        """Whether a client is on our side of any NAT (so our local address reaches it)."""
        c = classify(peer)
        if c in (AddrClass.LOOPBACK, AddrClass.LINK_LOCAL):
            return True
        if c not in _INSIDE:
            return False
        if self.local_networks is None:
            return True
        return any(peer.version == n.version and peer in n for n in self.local_networks)

    def advertise(self, local: str | IPAddress, peer: str | IPAddress) -> Decision:
        """The address to put in a 227 for a client ``peer`` reached on ``local``."""
        loc, cli = ip(local), ip(peer)
        for ov in self.overrides:
            if ov.matches(cli):
                return Decision(ov.address, f"override for {', '.join(map(str, ov.networks))}",
                                rule=Rule.OVERRIDE)
        cli_class = classify(cli)
        if self.is_inside(cli) and classify(loc) is not AddrClass.UNSPECIFIED:
            return Decision(loc, f"{cli_class.value} client on a local network: "
                            "told the local address", rule=Rule.LOCAL)
        masq = self._masq_for(cli.version)
        if masq is not None:
            return Decision(masq, f"{cli_class.value} client: told the masquerade address",
                            rule=Rule.MASQUERADE)
        found = self._discovered_for(cli, cli_class)
        if found is not None:
            return found
        if classify(loc) is AddrClass.UNSPECIFIED:
            raise NoUsableAddress(f"local address {loc} is unspecified and no masquerade set")
        warn = cli_class is AddrClass.PUBLIC and classify(loc) in _INSIDE
        return Decision(loc, "no masquerade address: told the local address", warn)

    def _discovered_for(self, cli: IPAddress, cli_class: AddrClass) -> Decision | None:
        d = self.discovered
        if d is None:
            return None
        router = d.router if d.router is not None and d.router.version == cli.version else None
        public = d.public if d.public is not None and d.public.version == cli.version else None
        if cli_class is AddrClass.PUBLIC:
            if public is not None and router is not None and public != router:
                return Decision(public, f"public client: told the public address {public} "
                                f"(from {d.public_source}); the router's WAN address "
                                f"{router} is {classify(router).value}: a second NAT lies "
                                "between the router and the internet", rule=Rule.PUBLIC)
            if public is not None:
                return Decision(public, f"public client: told the public address {public} "
                                f"(from {d.public_source})", rule=Rule.PUBLIC)
            if router is not None:
                return Decision(router, f"public client: told the router's WAN address "
                                f"{router} (from {d.router_source}), which is "
                                f"{classify(router).value}: another NAT lies beyond the "
                                "router and no STUN server (nat.stun_servers) told the "
                                "public address; set nat.stun_servers or nat.masquerade",
                                warn_unreachable=True, rule=Rule.ROUTER_WAN)
            return None
        if router is not None:
            return Decision(router, f"{cli_class.value} client beyond this host's networks "
                            f"(e.g. on the router's WAN side): told the router's WAN "
                            f"address {router} (from {d.router_source})",
                            rule=Rule.ROUTER_WAN)
        if public is not None:
            return Decision(public, f"{cli_class.value} client beyond this host's networks: "
                            f"told the public address {public} (from {d.public_source})",
                            rule=Rule.PUBLIC)
        return None

    # -- every class of client at once (serve --explain, a status page) ----------------

    def client_classes(self) -> list[ClientClass]:
        """One representative client per class: loopback, each LAN the host is on, a
        private client beyond those LANs, a public one (IPv4 and IPv6), each override."""
        out = [ClientClass("loopback client", ip("127.0.0.1")),
               ClientClass("loopback client", ip("::1"))]
        for net in self.local_networks or ():
            if classify(net.network_address) in (AddrClass.LOOPBACK, AddrClass.LINK_LOCAL):
                continue
            if net.num_addresses < 4:
                continue
            out.append(ClientClass(f"LAN client on {net}", net.network_address + 2))
        beyond = next((a for a in map(ip, _BEYOND_SAMPLES) if not self.is_inside(a)
                       and not any(ov.matches(a) for ov in self.overrides)), None)
        if beyond is not None:
            out.append(ClientClass("private client beyond this host's networks (e.g. on "
                                   "the router's WAN side)", beyond))
        out.append(ClientClass("public client", ip("198.51.100.77")))
        out.append(ClientClass("public client", ip("2001:db8::77")))
        for ov in self.overrides:
            n = ov.networks[0]
            peer = n.network_address + (1 if n.num_addresses > 1 else 0)
            out.append(ClientClass(f"client in override {', '.join(map(str, ov.networks))}",
                                   peer))
        return out

    def per_class(self, local_for: Callable[[IPAddress], IPAddress | None]
                  ) -> list[ClassDecision]:
        """What each of :meth:`client_classes` is told. ``local_for(peer)`` is the
        server's address toward that client (None: no route), supplied by the caller
        because only the I/O layer can ask the kernel."""
        out: list[ClassDecision] = []
        for c in self.client_classes():
            local = local_for(c.sample)
            if local is None:
                out.append(ClassDecision(c, None, None, "no route from this host"))
                continue
            if c.sample.version == 6:
                out.append(ClassDecision(c, local, None, "IPv6: uses EPSV (PASV refused)"))
                continue
            try:
                out.append(ClassDecision(c, local, self.advertise(local, c.sample)))
            except NoUsableAddress as e:
                out.append(ClassDecision(c, local, None, f"PASV refused ({e})"))
        return out


class UnreachableWarnings:
    """Say once per client network (a /24, or a /64 for IPv6) that a public client was
    told a private address (:attr:`Decision.warn_unreachable`, scenario S2): often
    enough to be seen, not once per PASV."""

    def __init__(self) -> None:
        self._seen: set[IPNetwork] = set()

    def first(self, peer: IPAddress) -> IPNetwork | None:
        """The client's network the first time it is seen, else None."""
        net = ipaddress.ip_network(f"{peer}/{24 if peer.version == 4 else 64}", strict=False)
        if net in self._seen:
            return None
        self._seen.add(net)
        return net


#: candidates for the "private client beyond this host's networks" class: the first one
#: not on a local network stands for the class
_BEYOND_SAMPLES = ("192.168.10.2", "10.254.254.2", "172.31.254.2", "100.64.254.2")
