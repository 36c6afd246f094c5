"""The PROXY protocol (v1 text and v2 binary): who the client really is, behind a balancer.

A TCP load balancer (HAProxy ``send-proxy``/``send-proxy-v2``, AWS NLB, a Kubernetes
ingress) opens its own connection to the server and starts it with one header naming the
client's address and port and the address it connected to. The format is HAProxy's
``doc/proxy-protocol.txt``; this module parses and builds it and nothing else: bytes in,
a :class:`ProxyHeader` or a :class:`ProxyError` out, no socket and no clock.

Written here rather than taken from PyPI: the maintained parser (``proxy-protocol``) reads
from an asyncio ``StreamReader``, while natftp's control connection is an
``asyncio.Protocol`` fed by ``data_received`` and its data connections are raw sockets
peeked at with ``MSG_PEEK``; both need an incremental parser of a byte buffer.

    hdr = parse(buf)          # None: not complete yet, feed more bytes
    if hdr is not None:
        rest = buf[hdr.length:]   # what the client sent after the header
        hdr.source                # (IPv4Address('198.51.100.7'), 50123), or None

``source`` is None when the header says to use the connection's own endpoints: a v2
``LOCAL`` command (a balancer's health check), v1 ``UNKNOWN``, or a v2 address family this
server does not use (``AF_UNSPEC``, ``AF_UNIX``), as the specification asks.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: the 12 bytes every v2 header starts with (designed to be refused by text protocols)
SIGNATURE_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
PREFIX_V1 = b"PROXY "
#: the longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses)
MAX_V1 = 107
#: the largest v2 header accepted here (16-byte fixed part + addresses + TLVs). The format
#: allows 16 + 65535; real balancers send well under 300 bytes, so a header announcing more
#: is refused at once instead of buffered.
MAX_V2 = 4096
#: the most bytes a header can take here (what a reader needs to peek at)
MAX_HEADER = MAX_V2

# v2 TLV types (section 2.2)
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_TYPE_NETNS = 0x30

_ADDR_LEN = {0x1: 12, 0x2: 36, 0x3: 216}  # AF_INET, AF_INET6, AF_UNIX


class ProxyError(ValueError):
    """Not a valid PROXY protocol header; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One parsed header."""

    version: int
    #: "PROXY" (relayed for a client) or "LOCAL" (v2: the balancer's own connection)
    command: str
    #: the client's address and port; None: use the connection's own endpoints
    source: tuple[IPAddress, int] | None
    #: the address and port the client connected to (on the balancer)
    destination: tuple[IPAddress, int] | None
    #: bytes the header took (the client's own bytes start there)
    length: int
    #: v2 TLVs as (type, value), in order
    tlvs: tuple[tuple[int, bytes], ...] = ()

    def tlv(self, kind: int) -> bytes | None:
        for t, v in self.tlvs:
            if t == kind:
                return v
        return None

    def describe(self) -> str:
        if self.source is None:
            return f"PROXY v{self.version} {self.command} (the connection's own addresses)"
        return (f"PROXY v{self.version} {_hostport(self.source)} -> "
                f"{_hostport(self.destination) if self.destination else '?'}")


def _hostport(a: tuple[IPAddress, int]) -> str:
    return f"[{a[0]}]:{a[1]}" if a[0].version == 6 else f"{a[0]}:{a[1]}"


def starts_header(buf: bytes) -> bool | None:
    """Whether ``buf`` starts with a PROXY header's signature: True, False, or None when
    ``buf`` is still too short to tell (a proper prefix of a signature)."""
    for sig in (SIGNATURE_V2, PREFIX_V1):
        n = min(len(buf), len(sig))
        if buf[:n] == sig[:n]:
            return True if n == len(sig) else None
    return False


def parse(buf: bytes) -> ProxyHeader | None:
    """The header at the start of ``buf``; None when more bytes are needed.

    Raises :class:`ProxyError` as soon as the bytes seen cannot start a valid header
    (including a buffer that does not start with a signature at all).
    """
    seen = starts_header(buf)
    if seen is False:
        raise ProxyError(f"no PROXY protocol header: the connection starts with "
                         f"{bytes(buf[:16])!r}")
    if seen is None:
        return None
    if buf.startswith(SIGNATURE_V2):
        return _parse_v2(buf)
    return _parse_v1(buf)


# -- version 1 ---------------------------------------------------------------------------

def _port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise ProxyError(f"v1 port {text!r} is not a decimal number without leading zeros")
    port = int(text)
    if port > 65535:
        raise ProxyError(f"v1 port {text} is above 65535")
    return port


def _parse_v1(buf: bytes) -> ProxyHeader | None:
    end = buf.find(b"\r\n", 0, MAX_V1)
    if end < 0:
        cr = buf.find(b"\r", 0, MAX_V1)
        if buf.find(b"\n", 0, MAX_V1) >= 0 or 0 <= cr < len(buf) - 1:
            raise ProxyError("v1 line ends with a lone CR or LF, not CRLF")
        if len(buf) >= MAX_V1:
            raise ProxyError(f"v1 line longer than {MAX_V1} bytes (no CRLF within them)")
        return None
    raw = bytes(buf[:end])
    if b"\n" in raw or b"\r" in raw:
        raise ProxyError("v1 line ends with a lone CR or LF, not CRLF")
    try:
        line = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyError("v1 line is not US-ASCII") from None
    parts = line.split(" ")
    length = end + 2
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        # the rest of the line, if any, is to be ignored
        return ProxyHeader(1, "PROXY", None, None, length)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyError(f"v1 line {line!r} is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT' "
                         "(single spaces)")
    cls = ipaddress.IPv4Address if parts[1] == "TCP4" else ipaddress.IPv6Address
    try:
        src, dst = cls(parts[2]), cls(parts[3])
    except ValueError:
        raise ProxyError(f"v1 addresses {parts[2]!r} {parts[3]!r} are not {parts[1]} "
                         "addresses") from None
    return ProxyHeader(1, "PROXY", (src, _port(parts[4])), (dst, _port(parts[5])), length)


# -- version 2 ---------------------------------------------------------------------------

def _parse_v2(buf: bytes) -> ProxyHeader | None:
    if len(buf) < 16:
        return None
    ver_cmd, fam, size = buf[12], buf[13], struct.unpack_from("!H", buf, 14)[0]
    if ver_cmd >> 4 != 2:
        raise ProxyError(f"v2 header with version {ver_cmd >> 4} (only 2 exists)")
    command = ver_cmd & 0x0F
    if command not in (0, 1):
        raise ProxyError(f"v2 header with unassigned command {command}")
    family, transport = fam >> 4, fam & 0x0F
    if family > 3 or transport > 2:
        raise ProxyError(f"v2 header with unassigned family/protocol byte 0x{fam:02x}")
    total = 16 + size
    if total > MAX_V2:
        raise ProxyError(f"v2 header of {total} bytes is larger than the {MAX_V2} "
                         "accepted here")
    if len(buf) < total:
        return None
    block = bytes(buf[16:total])
    need = _ADDR_LEN.get(family, 0)
    if command == 1 and len(block) < need:
        raise ProxyError(f"v2 address block of {len(block)} bytes is shorter than the "
                         f"{need} its family needs")
    source = destination = None
    if command == 1 and transport == 1 and family in (1, 2):
        n = 4 if family == 1 else 16
        cls = ipaddress.IPv4Address if family == 1 else ipaddress.IPv6Address
        sport, dport = struct.unpack_from("!HH", block, 2 * n)
        source = (cls(block[:n]), sport)
        destination = (cls(block[n:2 * n]), dport)
    if family == 0:
        # AF_UNSPEC: whatever the block holds is to be ignored (TLVs if they parse)
        try:
            tlvs = _tlvs(block)
        except ProxyError:
            tlvs = ()
    else:
        tlvs = _tlvs(block[need:] if command == 1 else _after_addresses(block, need))
    crc = [v for t, v in tlvs if t == PP2_TYPE_CRC32C]
    if crc:
        _check_crc(bytes(buf[:total]), tlvs, crc[0])
    return ProxyHeader(2, "PROXY" if command == 1 else "LOCAL", source, destination, total,
                       tlvs)


def _after_addresses(block: bytes, need: int) -> bytes:
    """LOCAL: the address block is to be ignored; TLVs follow it only when it is there."""
    return block[need:] if len(block) >= need else b""


def _tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        if len(data) - i < 3:
            raise ProxyError(f"v2 TLV at offset {i} is truncated (a TLV needs 3 bytes)")
        kind, n = data[i], struct.unpack_from("!H", data, i + 1)[0]
        if i + 3 + n > len(data):
            raise ProxyError(f"v2 TLV type 0x{kind:02x} announces {n} bytes, only "
                             f"{len(data) - i - 3} left in the header")
        out.append((kind, data[i + 3:i + 3 + n]))
        i += 3 + n
    return tuple(out)


def _check_crc(header: bytes, tlvs: tuple[tuple[int, bytes], ...], value: bytes) -> None:
    if len(value) != 4:
        raise ProxyError(f"v2 CRC32C TLV of {len(value)} bytes (must be 4)")
    # zero the checksum in place: find the TLV by walking them again (the value itself
    # could also occur elsewhere in the header); the TLVs end the header
    pos = len(header) - sum(3 + len(v) for _, v in tlvs)
    for t, v in tlvs:
        if t == PP2_TYPE_CRC32C:
            break
        pos += 3 + len(v)
    zeroed = header[:pos + 3] + b"\0\0\0\0" + header[pos + 7:]
    if crc32c(zeroed) != struct.unpack("!I", value)[0]:
        raise ProxyError("v2 header CRC32C checksum does not match")


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, RFC 4960 appendix B), as the v2 CRC32C TLV carries it."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# -- building headers (tests, the benchmark's load generator) -----------------------------

def encode_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A v1 line; ``source=None`` gives ``PROXY UNKNOWN``."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    fam = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {fam} {src} {dst} {source[1]} {destination[1]}\r\n".encode("ascii")


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None,
              tlvs: tuple[tuple[int, bytes], ...] = (), *, crc: bool = False) -> bytes:
    """A v2 header: PROXY over TCP, or LOCAL when ``source`` is None; ``crc`` appends a
    CRC32C TLV computed over the result."""
    if source is None or destination is None:
        ver_cmd, fam, addrs = 0x20, 0x00, b""
    else:
        src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
        ver_cmd, fam = 0x21, 0x11 if src.version == 4 else 0x21
        addrs = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    body = addrs + b"".join(struct.pack("!BH", t, len(v)) + v for t, v in tlvs)
    if crc:
        body += struct.pack("!BH", PP2_TYPE_CRC32C, 4) + b"\0\0\0\0"
    head = SIGNATURE_V2 + bytes((ver_cmd, fam)) + struct.pack("!H", len(body)) + body
    if crc:
        head = head[:-4] + struct.pack("!I", crc32c(head))
    return head
