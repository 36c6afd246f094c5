"""NAT-PMP (RFC 6886): message layouts and a small UDP client for the default gateway.

The codec functions are pure; :func:`request` does the I/O (UDP to the gateway's port
5351, retransmitting from 250 ms and doubling, RFC 6886 section 3.1, bounded by the
caller's timeout).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from natftp.nat.discovery.udp import udp_exchange

PORT = 5351
VERSION = 0
OP_EXTERNAL_ADDRESS = 0
OP_MAP_UDP = 1
OP_MAP_TCP = 2

RESULTS = {
    0: "success",
    1: "unsupported version",
    2: "not authorized/refused",
    3: "network failure",
    4: "out of resources",
    5: "unsupported opcode",
}


class NatPmpError(Exception):
    """A NAT-PMP answer with a non-zero result code, or one that does not parse."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ExternalAddress:
    epoch: int
    address: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class Mapping:
    opcode: int
    epoch: int
    internal_port: int
    external_port: int
    lifetime: int


def encode_external_address_request() -> bytes:
    """Section 3.2: version 0, opcode 0; two bytes."""
    return struct.pack("!BB", VERSION, OP_EXTERNAL_ADDRESS)


def encode_map_request(internal_port: int, external_port: int, lifetime: int,
                       tcp: bool = True) -> bytes:
    """Section 3.3: version, opcode (1 UDP, 2 TCP), 16 reserved bits, internal port,
    suggested external port, requested lifetime in seconds; twelve bytes.

    A deletion is a lifetime of 0 and, per the RFC, a suggested external port of 0.
    """
    op = OP_MAP_TCP if tcp else OP_MAP_UDP
    return struct.pack("!BBHHHI", VERSION, op, 0, internal_port, external_port, lifetime)


def _check_header(data: bytes, opcode: int, size: int) -> tuple[int, int]:
    if len(data) < 4:
        raise NatPmpError(f"answer too short ({len(data)} bytes)")
    version, op, result = struct.unpack_from("!BBH", data)
    if version != VERSION:
        raise NatPmpError(f"answer has version {version}, not {VERSION}")
    if op != 128 + opcode:
        raise NatPmpError(f"answer has opcode {op}, expected {128 + opcode}")
    if result != 0:
        raise NatPmpError(f"router answered result {result} "
                          f"({RESULTS.get(result, 'unknown')})", result)
    if len(data) < size:
        raise NatPmpError(f"answer too short ({len(data)} bytes, need {size})")
    return op, result


def decode_external_address_response(data: bytes) -> ExternalAddress:
    """Section 3.2: version, 128, result code, seconds since start of epoch, address."""
    _check_header(data, OP_EXTERNAL_ADDRESS, 12)
    epoch, raw = struct.unpack_from("!I4s", data, 4)
    return ExternalAddress(epoch, ipaddress.IPv4Address(raw))


def decode_map_response(data: bytes, tcp: bool = True) -> Mapping:
    """Section 3.3: version, 128+op, result, epoch, internal port, mapped external port,
    lifetime; sixteen bytes."""
    op = OP_MAP_TCP if tcp else OP_MAP_UDP
    _check_header(data, op, 16)
    epoch, internal, external, lifetime = struct.unpack_from("!IHHI", data, 4)
    return Mapping(op, epoch, internal, external, lifetime)


def _first_byte_ok(data: bytes) -> bool:
    # version 0 and a response opcode; anything else is not ours (e.g. a PCP answer)
    return len(data) >= 2 and data[0] == VERSION and data[1] >= 128


async def get_external_address(gateway: str, timeout: float) -> ExternalAddress:
    data = await udp_exchange(gateway, PORT, encode_external_address_request(), timeout,
                              accept=_first_byte_ok)
    return decode_external_address_response(data)


async def map_port(gateway: str, internal_port: int, external_port: int, lifetime: int,
                   timeout: float, tcp: bool = True, first_rto: float = 0.25) -> Mapping:
    """``first_rto``: the first retransmission delay (RFC 6886: 250 ms). A port mapper
    facing a router that takes longer than that per request raises it, so the router
    is not made to do every mapping twice."""
    req = encode_map_request(internal_port, external_port, lifetime, tcp)
    data = await udp_exchange(gateway, PORT, req, timeout, accept=_first_byte_ok,
                              first_rto=first_rto)
    m = decode_map_response(data, tcp)
    if m.internal_port != internal_port:
        raise NatPmpError(f"answer is for internal port {m.internal_port}, "
                          f"asked {internal_port}")
    return m


async def unmap_port(gateway: str, internal_port: int, timeout: float,
                     tcp: bool = True, first_rto: float = 0.25) -> Mapping:
    return await map_port(gateway, internal_port, 0, 0, timeout, tcp, first_rto)
