"""Which address a client is told in a 227 reply, decided per client and connection.

Pure: no sockets, no clock, no DNS. A masquerade *hostname* is resolved by the I/O layer
(see ``nat/resolver.py``), which hands the answers to :meth:`AdvertisePolicy.update`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from natftp.proto.addr import AddrClass, IPAddress, classify, ip

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


@dataclass(frozen=True, slots=True)
class Decision:
    """The address to advertise and a human sentence saying why (for logs and --explain)."""

    address: IPAddress
    reason: str
    warn_unreachable: bool = False


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
                return Decision(ov.address, f"override for {', '.join(map(str, ov.networks))}")
        cli_class = classify(cli)
        if self.is_inside(cli) and classify(loc) is not AddrClass.UNSPECIFIED:
            return Decision(loc, f"{cli_class.value} client on a local network: "
                            "told the local address")
        masq = self._masq_for(cli.version)
        if masq is not None:
            return Decision(masq, f"{cli_class.value} client: told the masquerade address")
        if classify(loc) is AddrClass.UNSPECIFIED:
            raise NoUsableAddress(f"local address {loc} is unspecified and no masquerade set")
        warn = cli_class is AddrClass.PUBLIC and classify(loc) in _INSIDE
        return Decision(loc, "no masquerade address: told the local address", warn)


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
