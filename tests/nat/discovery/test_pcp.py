"""PCP MAP messages against RFC 6887's layouts (sections 7.1, 7.2, 11.1)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from natftp.nat.discovery import pcp

NONCE = bytes(range(1, 13))


def mapped(v4: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{v4}").packed


def test_map_request_layout() -> None:
    msg = pcp.encode_map_request("172.16.0.2", NONCE, 30000, 30000, 3600)
    assert len(msg) == 60  # 24-byte common header + 36-byte MAP opcode data
    # common header: version 2, R=0 + opcode 1, reserved, lifetime, client address
    assert msg[0] == 2
    assert msg[1] == 1
    assert msg[2:4] == b"\0\0"
    assert struct.unpack("!I", msg[4:8]) == (3600,)
    assert msg[8:24] == mapped("172.16.0.2")  # IPv4 as IPv4-mapped IPv6 (section 5)
    # MAP: nonce, protocol, 24 reserved bits, internal port, suggested external port,
    # suggested external address (all zeros: "no preference", here ::ffff:0.0.0.0)
    assert msg[24:36] == NONCE
    assert msg[36] == 6
    assert msg[37:40] == b"\0\0\0"
    assert struct.unpack("!HH", msg[40:44]) == (30000, 30000)
    assert msg[44:60] == mapped("0.0.0.0")


def test_ipv6_client_and_udp() -> None:
    msg = pcp.encode_map_request("2001:db8::2", NONCE, 5000, 0, 0, protocol=pcp.PROTO_UDP)
    assert msg[8:24] == ipaddress.IPv6Address("2001:db8::2").packed
    assert msg[36] == 17
    assert struct.unpack("!I", msg[4:8]) == (0,)  # lifetime 0 = delete (section 15)


def test_nonce_must_be_96_bits() -> None:
    with pytest.raises(ValueError):
        pcp.encode_map_request("172.16.0.2", b"x", 1, 1, 1)
    assert len(pcp.new_nonce()) == 12


def response(result: int = 0, lifetime: int = 3600, opcode: int = 1,
             version: int = 2) -> bytes:
    header = struct.pack("!BBBBII12x", version, 0x80 | opcode, 0, result, lifetime, 777)
    body = struct.pack("!12sB3xHH16s", NONCE, 6, 2121, 2121, mapped("198.51.100.1"))
    return header + body


def test_map_response() -> None:
    r = pcp.decode_map_response(response())
    assert (r.result, r.lifetime, r.epoch) == (0, 3600, 777)
    assert r.nonce == NONCE
    assert (r.protocol, r.internal_port, r.external_port) == (6, 2121, 2121)
    assert r.external_address == ipaddress.IPv4Address("198.51.100.1")  # unmapped


@pytest.mark.parametrize(("code", "name"), [
    (2, "NOT_AUTHORIZED"), (8, "NO_RESOURCES"), (11, "CANNOT_PROVIDE_EXTERNAL"),
])
def test_error_results(code: int, name: str) -> None:
    with pytest.raises(pcp.PcpError, match=name) as e:
        pcp.decode_map_response(response(result=code, lifetime=30))
    assert e.value.code == code
    assert e.value.lifetime == 30  # how long the error is to be believed (7.2)


def test_not_a_map_response() -> None:
    with pytest.raises(pcp.PcpError, match="not a MAP"):
        pcp.decode_map_response(response(opcode=0))
    req = pcp.encode_map_request("172.16.0.2", NONCE, 1, 1, 1)
    with pytest.raises(pcp.PcpError, match="not a MAP"):
        pcp.decode_map_response(req)  # R bit clear: a request, not a response
    with pytest.raises(pcp.PcpError, match="version"):
        pcp.decode_map_response(response(version=0))
    with pytest.raises(pcp.PcpError, match="short"):
        pcp.decode_map_response(response()[:40])
