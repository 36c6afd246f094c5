"""PCP (RFC 6887): MAP requests to the default gateway; message layouts and a UDP client.

Only the MAP opcode is used (section 11). PCP has no "what is my address" request, so
discovery asks for a short-lived mapping of a port and reads the assigned external
address (then deletes it with the same nonce: a PCP server only deletes a mapping for
the nonce that created it, section 11.1).
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from natftp.nat.discovery.udp import udp_exchange
from natftp.proto.addr import IPAddress, ip

PORT = 5351
VERSION = 2
OP_ANNOUNCE = 0
OP_MAP = 1
PROTO_TCP = 6
PROTO_UDP = 17

HEADER_SIZE = 24
MAP_SIZE = 36

RESULTS = {
    0: "SUCCESS",
    1: "UNSUPP_VERSION",
    2: "NOT_AUTHORIZED",
    3: "MALFORMED_REQUEST",
    4: "UNSUPP_OPCODE",
    5: "UNSUPP_OPTION",
    6: "MALFORMED_OPTION",
    7: "NETWORK_FAILURE",
    8: "NO_RESOURCES",
    9: "UNSUPP_PROTOCOL",
    10: "USER_EX_QUOTA",
    11: "CANNOT_PROVIDE_EXTERNAL",
    12: "ADDRESS_MISMATCH",
    13: "EXCESSIVE_REMOTE_PEERS",
}


class PcpError(Exception):
    """A PCP answer with a non-zero result code, or one that does not parse."""

    def __init__(self, message: str, code: int | None = None, lifetime: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.lifetime = lifetime


@dataclass(frozen=True, slots=True)
class MapResponse:
    result: int
    lifetime: int
    epoch: int
    nonce: bytes
    protocol: int
    internal_port: int
    external_port: int
    external_address: IPAddress


def new_nonce() -> bytes:
    return os.urandom(12)


def _addr16(address: str | IPAddress) -> bytes:
    """Addresses are 128 bits; IPv4 goes as an IPv4-mapped IPv6 address (section 5)."""
    a = ip(address)
    if isinstance(a, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + a.packed).packed
    return a.packed


def _from16(raw: bytes) -> IPAddress:
    return ip(str(ipaddress.IPv6Address(raw)))


def encode_map_request(client: str | IPAddress, nonce: bytes, internal_port: int,
                       external_port: int, lifetime: int, protocol: int = PROTO_TCP,
                       external_address: str | IPAddress = "0.0.0.0") -> bytes:
    """Sections 7.1 and 11.1: the 24-byte common header (version 2, R=0 and opcode,
    16 reserved bits, requested lifetime, client address) then the 36-byte MAP body
    (96-bit nonce, protocol, 24 reserved bits, internal port, suggested external port,
    suggested external address). A lifetime of 0 deletes the mapping."""
    if len(nonce) != 12:
        raise ValueError("PCP nonce is 96 bits")
    header = struct.pack("!BBHI16s", VERSION, OP_MAP & 0x7F, 0, lifetime, _addr16(client))
    body = struct.pack("!12sB3xHH16s", nonce, protocol, internal_port, external_port,
                       _addr16(external_address))
    return header + body


def decode_map_response(data: bytes) -> MapResponse:
    """Sections 7.2 and 11.1: version, R=1 and opcode, 8 reserved bits, result code,
    lifetime, epoch, 96 reserved bits; then the MAP body with the assigned port/address.

    Raises PcpError for a non-zero result (with the lifetime the server gave, which
    says for how long the error applies, section 7.2)."""
    if len(data) < HEADER_SIZE:
        raise PcpError(f"answer too short ({len(data)} bytes)")
    version, r_op, _res, result, lifetime, epoch = struct.unpack_from("!BBBBII", data)
    if version != VERSION:
        raise PcpError(f"answer has version {version}, not {VERSION}", result)
    if not r_op & 0x80 or r_op & 0x7F != OP_MAP:
        raise PcpError(f"answer is not a MAP response (opcode byte {r_op:#x})")
    if result != 0:
        raise PcpError(f"router answered {RESULTS.get(result, 'unknown')} ({result})",
                       result, lifetime)
    if len(data) < HEADER_SIZE + MAP_SIZE:
        raise PcpError(f"MAP answer too short ({len(data)} bytes)")
    nonce, proto, internal, external, raw = struct.unpack_from("!12sB3xHH16s", data,
                                                               HEADER_SIZE)
    return MapResponse(result, lifetime, epoch, nonce, proto, internal, external,
                       _from16(raw))


def _accept_for(nonce: bytes) -> Callable[[bytes], bool]:
    def accept(data: bytes) -> bool:
        if len(data) < 2:
            return False
        if data[0] != VERSION:
            # a NAT-PMP-only server answers version 0 "unsupported version": take it
            # so the caller learns at once that PCP is not spoken here
            return data[0] == 0 and len(data) >= 4
        if len(data) >= HEADER_SIZE + 12 and data[1] == 0x80 | OP_MAP:
            return data[HEADER_SIZE:HEADER_SIZE + 12] == nonce or data[3] != 0
        return data[1] & 0x80 != 0 and data[3] != 0
    return accept


async def map_port(gateway: str, client: str, nonce: bytes, internal_port: int,
                   external_port: int, lifetime: int, timeout: float,
                   protocol: int = PROTO_TCP, first_rto: float = 0.25) -> MapResponse:
    """``first_rto``: see :func:`natftp.nat.discovery.natpmp.map_port`."""
    req = encode_map_request(client, nonce, internal_port, external_port, lifetime,
                             protocol)
    accept = _accept_for(nonce)
    data = await udp_exchange(gateway, PORT, req, timeout, accept=accept,
                              first_rto=first_rto)
    if data[0] != VERSION:
        raise PcpError("the gateway speaks NAT-PMP, not PCP (it answered version "
                       f"{data[0]})", 1)
    resp = decode_map_response(data)
    if resp.nonce != nonce:
        raise PcpError("answer carries another request's nonce")
    return resp
