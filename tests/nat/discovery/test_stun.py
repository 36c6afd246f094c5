"""STUN Binding messages against RFC 8489's layout and RFC 5769's test vectors."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from natftp.nat.discovery import stun

# RFC 5769 section 2: the transaction ID shared by the sample messages
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")

# RFC 5769 section 2.2, "Sample IPv4 Response", byte for byte (SOFTWARE "test vector",
# XOR-MAPPED-ADDRESS 192.0.2.1:32853, MESSAGE-INTEGRITY, FINGERPRINT)
RFC5769_IPV4_RESPONSE = bytes.fromhex(
    "0101003c" "2112a442" "b7e7a701bc34d686fa87dfae"
    "8022000b" "74657374" "20766563" "746f7220"
    "00200008" "0001a147" "e112a643"
    "00080014" "2b91f599" "fd9e90c3" "8c7489f9" "2af9ba53" "f06be7d7"
    "80280004" "c07d4c96"
)

# RFC 5769 section 2.3's XOR-MAPPED-ADDRESS for 2001:db8:1234:5678:11:2233:4455:6677
# port 32853 (the attribute as printed there; wrapped in a bare success response)
RFC5769_IPV6_XMA = bytes.fromhex(
    "00200014" "0002a147" "0113a9fa" "a5d3f179" "bc25f4b5" "bed2b9d9")


def test_binding_request_layout() -> None:
    msg = stun.encode_binding_request(TID)
    assert len(msg) == 20
    mtype, length, cookie, tid = struct.unpack("!HHI12s", msg)
    assert mtype == 0x0001  # Binding, class request: the two top bits are zero
    assert length == 0
    assert cookie == 0x2112A442
    assert tid == TID


def test_transaction_id_is_96_bits() -> None:
    with pytest.raises(ValueError):
        stun.encode_binding_request(b"short")
    assert len(stun.new_transaction_id()) == 12


def test_rfc5769_ipv4_response() -> None:
    m = stun.decode_binding_response(RFC5769_IPV4_RESPONSE, TID)
    assert m.address == ipaddress.IPv4Address("192.0.2.1")
    assert m.port == 32853
    assert m.attribute == stun.ATTR_XOR_MAPPED_ADDRESS


def test_rfc5769_ipv6_xor_mapped_address() -> None:
    msg = struct.pack("!HHI12s", 0x0101, len(RFC5769_IPV6_XMA), 0x2112A442, TID)
    m = stun.decode_binding_response(msg + RFC5769_IPV6_XMA, TID)
    assert m.address == ipaddress.IPv6Address("2001:db8:1234:5678:11:2233:4455:6677")
    assert m.port == 32853


def test_rfc3489_mapped_address_is_read_plain() -> None:
    # an old server (stund): MAPPED-ADDRESS only, not XOR-ed
    attr = struct.pack("!HHBBH4s", 0x0001, 8, 0, 1, 3478, bytes([198, 51, 100, 1]))
    msg = struct.pack("!HHI12s", 0x0101, len(attr), 0x2112A442, TID) + attr
    m = stun.decode_binding_response(msg, TID)
    assert (str(m.address), m.port) == ("198.51.100.1", 3478)


def test_xor_mapped_preferred_over_mapped() -> None:
    plain = struct.pack("!HHBBH4s", 0x0001, 8, 0, 1, 1, bytes([10, 0, 0, 1]))
    xma = RFC5769_IPV4_RESPONSE[36:48]  # the XOR-MAPPED-ADDRESS attribute
    msg = struct.pack("!HHI12s", 0x0101, len(plain) + 12, 0x2112A442, TID) + plain + xma
    assert str(stun.decode_binding_response(msg, TID).address) == "192.0.2.1"


def test_error_response_reports_code_and_reason() -> None:
    reason = b"Bad Request"
    value = struct.pack("!HBB", 0, 4, 0) + reason  # class 4, number 0 -> 400
    pad = b"\0" * (-len(value) % 4)
    attr = struct.pack("!HH", 0x0009, len(value)) + value + pad
    msg = struct.pack("!HHI12s", 0x0111, len(attr), 0x2112A442, TID) + attr
    with pytest.raises(stun.StunError, match="400 Bad Request"):
        stun.decode_binding_response(msg, TID)


def test_other_transaction_is_refused() -> None:
    with pytest.raises(stun.StunError, match="transaction"):
        stun.decode_binding_response(RFC5769_IPV4_RESPONSE, bytes(12))


def test_truncated_and_attribute_less_answers() -> None:
    with pytest.raises(stun.StunError):
        stun.decode_binding_response(RFC5769_IPV4_RESPONSE[:10], TID)
    with pytest.raises(stun.StunError, match="length"):
        stun.decode_binding_response(RFC5769_IPV4_RESPONSE[:40], TID)
    bare = struct.pack("!HHI12s", 0x0101, 0, 0x2112A442, TID)
    with pytest.raises(stun.StunError, match="MAPPED-ADDRESS"):
        stun.decode_binding_response(bare, TID)


@pytest.mark.parametrize(("spec", "want"), [
    ("stun.example.net", ("stun.example.net", 3478)),
    ("stun.example.net:19302", ("stun.example.net", 19302)),
    ("stun:198.51.100.2:3479", ("198.51.100.2", 3479)),
    ("[2001:db8::1]:3478", ("2001:db8::1", 3478)),
    ("2001:db8::1", ("2001:db8::1", 3478)),
])
def test_server_spec(spec: str, want: tuple[str, int]) -> None:
    assert stun.parse_server(spec) == want
