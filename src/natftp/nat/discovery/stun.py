"""STUN Binding (RFC 8489, formerly RFC 5389): what address a server sees us coming from.

Only servers the administrator configured are asked (none by default). Old RFC 3489
servers (e.g. Debian's stund) answer with MAPPED-ADDRESS and sometimes the pre-standard
XOR-MAPPED-ADDRESS code 0x8020; both are read, XOR-MAPPED-ADDRESS (0x0020) first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

from natftp.nat.discovery.udp import udp_exchange
from natftp.proto.addr import IPAddress
from natftp.proto.hostport import parse_hostport

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_ERROR_CODE = 0x0009
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_XOR_MAPPED_ADDRESS_OLD = 0x8020
DEFAULT_PORT = 3478


class StunError(Exception):
    """A STUN answer that is an error or does not parse."""


@dataclass(frozen=True, slots=True)
class Mapped:
    address: IPAddress
    port: int
    attribute: int


def new_transaction_id() -> bytes:
    return os.urandom(12)


def encode_binding_request(transaction_id: bytes) -> bytes:
    """Section 5 (RFC 8489): type 0x0001, message length 0 (no attributes), the magic
    cookie 0x2112A442, a 96-bit transaction ID; 20 bytes."""
    if len(transaction_id) != 12:
        raise ValueError("STUN transaction ID is 96 bits")
    return struct.pack("!HHI12s", BINDING_REQUEST, 0, MAGIC_COOKIE, transaction_id)


def _xor_address(family: int, xport: int, raw: bytes, transaction_id: bytes
                 ) -> tuple[IPAddress, int]:
    port = xport ^ (MAGIC_COOKIE >> 16)
    key = struct.pack("!I", MAGIC_COOKIE) + transaction_id
    plain = bytes(a ^ b for a, b in zip(raw, key, strict=False))
    addr: IPAddress
    if family == 1:
        addr = ipaddress.IPv4Address(plain[:4])
    else:
        addr = ipaddress.IPv6Address(plain[:16])
    return addr, port


def _plain_address(family: int, port: int, raw: bytes) -> tuple[IPAddress, int]:
    addr: IPAddress
    addr = ipaddress.IPv4Address(raw[:4]) if family == 1 else ipaddress.IPv6Address(raw[:16])
    return addr, port


def decode_binding_response(data: bytes, transaction_id: bytes) -> Mapped:
    """Read the mapped address from a Binding success response (section 14.2:
    XOR-MAPPED-ADDRESS, the port XOR the cookie's top 16 bits, the address XOR the
    cookie (IPv4) or cookie+transaction ID (IPv6); section 14.1: MAPPED-ADDRESS)."""
    if len(data) < 20:
        raise StunError(f"answer too short ({len(data)} bytes)")
    mtype, length, cookie, tid = struct.unpack_from("!HHI12s", data)
    if tid != transaction_id:
        raise StunError("answer carries another transaction ID")
    if 20 + length > len(data):
        raise StunError("answer's length field exceeds the datagram")
    attrs: dict[int, bytes] = {}
    pos = 20
    while pos + 4 <= 20 + length:
        atype, alen = struct.unpack_from("!HH", data, pos)
        value = data[pos + 4:pos + 4 + alen]
        if len(value) != alen:
            raise StunError("truncated attribute")
        attrs.setdefault(atype, value)
        pos += 4 + alen + (-alen % 4)  # attributes are padded to 32 bits
    if mtype == BINDING_ERROR:
        err = attrs.get(ATTR_ERROR_CODE, b"")
        if len(err) >= 4:
            code = (err[2] & 0x7) * 100 + err[3]
            reason = err[4:].decode("utf-8", "replace")
            raise StunError(f"server answered error {code} {reason}".rstrip())
        raise StunError("server answered a Binding error")
    if mtype != BINDING_SUCCESS:
        raise StunError(f"not a Binding success response (type {mtype:#06x})")
    for code in (ATTR_XOR_MAPPED_ADDRESS, ATTR_XOR_MAPPED_ADDRESS_OLD, ATTR_MAPPED_ADDRESS):
        attr = attrs.get(code)
        if attr is None:
            continue
        if len(attr) < 8:
            raise StunError(f"attribute {code:#06x} too short")
        _r, family, port = struct.unpack_from("!BBH", attr)
        if family not in (1, 2) or (family == 2 and len(attr) < 20):
            raise StunError(f"attribute {code:#06x}: unknown address family {family}")
        if code == ATTR_MAPPED_ADDRESS or cookie != MAGIC_COOKIE:
            addr, p = _plain_address(family, port, attr[4:])
        else:
            addr, p = _xor_address(family, port, attr[4:], tid)
        return Mapped(addr, p, code)
    raise StunError("answer has no (XOR-)MAPPED-ADDRESS")


def parse_server(spec: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or ``stun:host:port`` -> (host, port)."""
    s = spec.strip()
    if s.startswith("stun:"):
        s = s[5:]
    return parse_hostport(s, default_port=DEFAULT_PORT)


async def query(server: str, timeout: float) -> Mapped:
    """One Binding exchange with a configured server (a hostname is resolved first)."""
    host, port = parse_server(server)
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM), timeout)
    addr = str(infos[0][4][0])
    tid = new_transaction_id()
    data = await udp_exchange(addr, port, encode_binding_request(tid), timeout,
                              accept=lambda d: len(d) >= 20 and d[8:20] == tid,
                              first_rto=0.5)
    return decode_binding_response(data, tid)
