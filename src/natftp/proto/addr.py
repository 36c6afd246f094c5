"""The one place that knows how FTP writes addresses on the wire.

PORT and the 227 reply carry ``h1,h2,h3,h4,p1,p2``; EPRT carries ``|proto|addr|port|``
(RFC 2428) and the 229 reply ``(|||port|)``. The server, client, gateway and doctor all go
through these functions, so a quirk is fixed once.

Classification is our own rather than :mod:`ipaddress`'s ``is_private``, which counts the
documentation prefixes (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) as private. For
NAT decisions what matters is whether an address can be routed across the internet, and
a documentation prefix stands in for the internet in labs and examples.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressError(ValueError):
    """A PORT/EPRT argument or a 227/229 reply that does not parse."""


class AddrClass(enum.Enum):
    """What kind of address this is, for deciding whether a peer can reach it."""

    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    CGNAT = "carrier-grade NAT"
    LINK_LOCAL = "link-local"
    MAPPED = "IPv4-mapped IPv6"
    MULTICAST = "multicast"
    PUBLIC = "public"


_PRIVATE_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_V4_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
_V4_THIS_NET = ipaddress.ip_network("0.0.0.0/8")


def ip(value: str | IPAddress) -> IPAddress:
    """Parse an address, dropping an IPv6 zone and unwrapping IPv4-mapped IPv6."""
    if isinstance(value, str):
        value = ipaddress.ip_address(value.split("%", 1)[0])
    return unmap(value)


def unmap(addr: IPAddress) -> IPAddress:
    """``::ffff:192.0.2.1`` -> ``192.0.2.1``; any other address unchanged."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def classify(addr: str | IPAddress) -> AddrClass:
    """Classify an address *as written* (a mapped address is reported as MAPPED)."""
    a = ipaddress.ip_address(addr.split("%", 1)[0]) if isinstance(addr, str) else addr
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return AddrClass.MAPPED
    if a.is_unspecified or (isinstance(a, ipaddress.IPv4Address) and a in _V4_THIS_NET):
        return AddrClass.UNSPECIFIED
    if a.is_loopback:
        return AddrClass.LOOPBACK
    if a.is_multicast:
        return AddrClass.MULTICAST
    if a.is_link_local or (isinstance(a, ipaddress.IPv4Address) and a in _V4_LINK_LOCAL):
        return AddrClass.LINK_LOCAL
    if isinstance(a, ipaddress.IPv4Address) and a in _CGNAT:
        return AddrClass.CGNAT
    if any(a in n for n in _PRIVATE_NETS if n.version == a.version):
        return AddrClass.PRIVATE
    return AddrClass.PUBLIC


def is_public(addr: str | IPAddress) -> bool:
    """True when the address can be routed across the internet."""
    return classify(ip(addr)) is AddrClass.PUBLIC


def pasv_address_usable(advertised: str | IPAddress, control_peer: str | IPAddress) -> bool:
    """Whether a client should connect to the address a 227 reply advertised.

    Only an address equal to the control connection's peer is taken at face value:
    an unspecified address points the client at itself, a non-public one is unreachable
    when the control peer is public, and any other address may be a third host a hostile
    server wants us to connect to (CVE-2020-8284). Callers then use the control peer.
    """
    return ip(advertised) == ip(control_peer)


@dataclass(frozen=True, slots=True)
class PassiveTarget:
    """Where a client opens a passive data connection, and whether that is not what the
    server said (``ignored``: the 227 address that was replaced by the control peer)."""

    host: IPAddress
    port: int
    ignored: IPAddress | None = None

    def note(self) -> str:
        """A sentence for logs and -v output when the advertised address was replaced."""
        if self.ignored is None:
            return ""
        return (f"PASV advertised {self.ignored} ({classify(self.ignored).value}), not the "
                f"server's address {self.host}; connecting to {self.host} instead")


def passive_target(code: int, text: str, control_peer: str | IPAddress, *,
                   trust: bool = False) -> PassiveTarget:
    """The data connection target for a 227 (PASV) or 229 (EPSV) reply received on a
    control connection to ``control_peer``: the rule every client-side part follows
    (client, doctor, the gateway's upstream side).

    229 names only a port: the control peer it is. 227's address is followed only when
    :func:`pasv_address_usable` says so or ``trust`` is set (the client's
    ``trust_pasv_address``); any other address is replaced by the control peer.
    Raises :class:`AddressError` for another reply code, an unreadable reply or port 0.
    """
    peer = ip(control_peer)
    if code == 229:
        return PassiveTarget(peer, parse_229(text))
    if code != 227:
        raise AddressError(f"expected a 227 or 229 reply, got {code}")
    advertised, port = parse_227(text)
    if port == 0:
        raise AddressError(f"227 reply names port 0: {text!r}")
    if trust or pasv_address_usable(advertised, peer):
        return PassiveTarget(advertised, port)
    return PassiveTarget(peer, port, ignored=advertised)


class ActiveTargetRefused(AddressError):
    """PORT/EPRT names a target an FTP server (or gateway) must not connect to.

    ``kind`` is ``"family"`` (522: the other IP version), ``"foreign"`` (501: not the
    client's own address, an FTP bounce) or ``"low-port"`` (501: a privileged port).
    """

    def __init__(self, kind: str, code: int, why: str) -> None:
        super().__init__(why)
        self.kind, self.code, self.why = kind, code, why

    def reply_text(self, verb: str, setting: str = "") -> str:
        """The refusal's reply text; ``setting`` names what would allow it (server)."""
        if self.kind == "family":
            return f"{verb} refused: {self.why}."
        extra = f"; {setting}" if setting else ""
        return f"{verb} refused: {self.why} (FTP bounce protection{extra})."


def active_target(host: str | IPAddress, port: int, control_peer: str | IPAddress, *,
                  allow_foreign: bool = False, allow_low_ports: bool = False) -> IPAddress:
    """Where an active-mode data connection for PORT/EPRT ``host``/``port`` may go, for a
    client whose control connection comes from ``control_peer``. The server and the
    gateway both ask this.

    An unspecified address of the client's own family is the client itself (lftp sends
    ``EPRT |2|::|port|`` from a socket listening on any address: "connect back to me",
    so no bounce is possible). Raises :class:`ActiveTargetRefused`.
    """
    peer = ip(control_peer)
    target = ip(host)
    if target.is_unspecified and target.version == peer.version:
        target = peer
    if target.version != peer.version:
        want = "1" if peer.version == 4 else "2"
        raise ActiveTargetRefused(
            "family", 522, f"an IPv{target.version} address on an IPv{peer.version} "
            f"connection; network protocol not supported, use ({want})")
    if target != peer and not allow_foreign:
        raise ActiveTargetRefused("foreign", 501,
                                  f"address {target} is not your address {peer}")
    if port < 1024 and not allow_low_ports:
        raise ActiveTargetRefused("low-port", 501, f"port {port} is below 1024")
    return target


# -- PORT and 227: h1,h2,h3,h4,p1,p2 ------------------------------------------------

_SIX_NUMBERS = re.compile(r"(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})"
                          r"\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})")


def _from_six(nums: list[int]) -> tuple[ipaddress.IPv4Address, int]:
    if any(n > 255 for n in nums):
        raise AddressError(f"number out of range 0-255 in {','.join(map(str, nums))}")
    host = ipaddress.IPv4Address(".".join(str(n) for n in nums[:4]))
    port = nums[4] * 256 + nums[5]
    return host, port


def _to_six(host: str | IPAddress, port: int) -> str:
    a = ip(host)
    if not isinstance(a, ipaddress.IPv4Address):
        raise AddressError(f"{a} is not an IPv4 address; PORT and PASV carry IPv4 only")
    if not 0 <= port <= 65535:
        raise AddressError(f"port {port} out of range")
    return ",".join([*str(a).split("."), str(port >> 8), str(port & 0xFF)])


def parse_port_arg(arg: str) -> tuple[ipaddress.IPv4Address, int]:
    """Parse the argument of ``PORT h1,h2,h3,h4,p1,p2``."""
    parts = arg.strip().split(",")
    if len(parts) != 6 or not all(p.strip().isdigit() for p in parts):
        raise AddressError(f"PORT needs six comma-separated numbers, got {arg!r}")
    return _from_six([int(p) for p in parts])


def format_port_arg(host: str | IPAddress, port: int) -> str:
    """The argument for ``PORT``: ``h1,h2,h3,h4,p1,p2``."""
    return _to_six(host, port)


def format_227(host: str | IPAddress, port: int) -> str:
    """Text of a 227 reply (without the code)."""
    return f"Entering Passive Mode ({_to_six(host, port)})."


def parse_227(text: str) -> tuple[ipaddress.IPv4Address, int]:
    """Find the address in a 227 reply's text.

    RFC 1123 4.1.2.6 tells clients to scan for the six numbers rather than rely on the
    parentheses, and servers do differ (some omit them), so we scan.
    """
    m = _SIX_NUMBERS.search(text)
    if m is None:
        raise AddressError(f"no h1,h2,h3,h4,p1,p2 in 227 reply {text!r}")
    return _from_six([int(g) for g in m.groups()])


# -- EPRT and 229 (RFC 2428) ---------------------------------------------------------

def parse_eprt_arg(arg: str) -> tuple[IPAddress, int]:
    """Parse ``EPRT |1|132.235.1.2|6275|``; the delimiter is the first character."""
    arg = arg.strip()
    if len(arg) < 2:
        raise AddressError(f"EPRT argument too short: {arg!r}")
    d = arg[0]
    if not 33 <= ord(d) <= 126:
        raise AddressError(f"EPRT delimiter {d!r} is not printable ASCII")
    fields = arg.split(d)
    if len(fields) != 5 or fields[0] != "" or fields[4] != "":
        raise AddressError(f"EPRT needs |proto|address|port|, got {arg!r}")
    proto, host, port_s = fields[1], fields[2], fields[3]
    if proto not in ("1", "2"):
        raise AddressError(f"EPRT network protocol {proto!r} unsupported (use 1 or 2)")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError as e:
        raise AddressError(f"EPRT address {host!r} is not an IP address") from e
    if (proto == "1") != (addr.version == 4):
        raise AddressError(f"EPRT protocol {proto} does not match address {host}")
    if not port_s.isdigit() or not 0 < int(port_s) <= 65535:
        raise AddressError(f"EPRT port {port_s!r} out of range 1-65535")
    return addr, int(port_s)


def format_eprt_arg(host: str | IPAddress, port: int) -> str:
    """The argument for ``EPRT``: ``|1|addr|port|`` or ``|2|addr|port|``."""
    a = ip(host)
    return f"|{1 if a.version == 4 else 2}|{a}|{port}|"


def format_229(port: int) -> str:
    """Text of a 229 reply (without the code)."""
    return f"Entering Extended Passive Mode (|||{port}|)"


_EPSV = re.compile(r"\((.)\1\1(\d{1,5})\1\)")


def parse_229(text: str) -> int:
    """The port in a 229 reply: ``(|||6446|)`` with any repeated delimiter."""
    m = _EPSV.search(text)
    if m is None:
        raise AddressError(f"no (|||port|) in 229 reply {text!r}")
    port = int(m.group(2))
    if not 0 < port <= 65535:
        raise AddressError(f"229 port {port} out of range")
    return port
