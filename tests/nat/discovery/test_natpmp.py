"""NAT-PMP messages against RFC 6886's layouts (sections 3.2, 3.3, 3.5)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from natftp.nat.discovery import natpmp


def test_external_address_request_is_two_bytes() -> None:
    assert natpmp.encode_external_address_request() == b"\x00\x00"


def test_external_address_response() -> None:
    # version 0, opcode 128, result 0, seconds since epoch, external IPv4 address
    data = struct.pack("!BBHI4s", 0, 128, 0, 12345, bytes([198, 51, 100, 1]))
    ans = natpmp.decode_external_address_response(data)
    assert ans.epoch == 12345
    assert ans.address == ipaddress.IPv4Address("198.51.100.1")


def test_map_request_layout_tcp_and_udp() -> None:
    tcp = natpmp.encode_map_request(30000, 30000, 3600)
    assert len(tcp) == 12
    assert tcp == bytes([0, 2, 0, 0]) + struct.pack("!HHI", 30000, 30000, 3600)
    udp = natpmp.encode_map_request(5000, 6000, 7200, tcp=False)
    assert udp[1] == 1
    assert struct.unpack("!HHI", udp[4:]) == (5000, 6000, 7200)


def test_delete_is_lifetime_zero_external_zero() -> None:
    # section 3.4: lifetime 0 and suggested external port 0 destroy the mapping
    assert natpmp.encode_map_request(30000, 0, 0) == bytes([0, 2, 0, 0]) + \
        struct.pack("!HHI", 30000, 0, 0)


def test_map_response() -> None:
    data = struct.pack("!BBHIHHI", 0, 130, 0, 99, 2121, 2121, 3600)
    m = natpmp.decode_map_response(data)
    assert (m.opcode, m.epoch, m.internal_port, m.external_port, m.lifetime) == \
        (2, 99, 2121, 2121, 3600)


@pytest.mark.parametrize(("code", "words"), [
    (1, "unsupported version"), (2, "not authorized"), (3, "network failure"),
    (4, "out of resources"), (5, "unsupported opcode"),
])
def test_result_codes_are_named(code: int, words: str) -> None:
    data = struct.pack("!BBHIHHI", 0, 130, code, 0, 21, 0, 0)
    with pytest.raises(natpmp.NatPmpError, match=words) as e:
        natpmp.decode_map_response(data)
    assert e.value.code == code


def test_wrong_opcode_version_and_length_are_refused() -> None:
    ok = struct.pack("!BBHIHHI", 0, 130, 0, 0, 21, 21, 60)
    with pytest.raises(natpmp.NatPmpError, match="opcode"):
        natpmp.decode_map_response(ok, tcp=False)  # a TCP answer to a UDP request
    with pytest.raises(natpmp.NatPmpError, match="version"):
        natpmp.decode_map_response(b"\x02" + ok[1:])  # a PCP server's answer
    with pytest.raises(natpmp.NatPmpError, match="short"):
        natpmp.decode_map_response(ok[:10])
    with pytest.raises(natpmp.NatPmpError, match="short"):
        natpmp.decode_external_address_response(b"\x00\x80\x00\x00\x00")
