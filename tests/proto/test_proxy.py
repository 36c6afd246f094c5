"""PROXY protocol parsing (proto/proxy.py), from the examples of HAProxy's specification
(doc/proxy-protocol.txt) and the malformed headers it says to refuse."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from natftp.proto.proxy import (
    MAX_V1,
    MAX_V2,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    SIGNATURE_V2,
    ProxyError,
    crc32c,
    encode_v1,
    encode_v2,
    parse,
    starts_header,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


# -- version 1 -------------------------------------------------------------------------

def test_v1_example_from_the_specification_and_the_bytes_after_it() -> None:
    buf = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n"
    h = parse(buf)
    assert h is not None
    assert (h.version, h.command) == (1, "PROXY")
    assert h.source == (V4("192.168.0.1"), 56324)
    assert h.destination == (V4("192.168.0.11"), 443)
    assert buf[h.length:] == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_longest_line_of_the_specification() -> None:
    full = ":".join(["ffff"] * 8)
    line = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    assert len(line) == 104
    h = parse(line)
    assert h is not None and h.source == (V6(full), 65535) and h.length == 104


def test_v1_unknown_means_the_connections_own_addresses() -> None:
    for line in (b"PROXY UNKNOWN\r\n",
                 b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n"):
        h = parse(line + b"USER x\r\n")
        assert h is not None and h.source is None and h.length == len(line)


@pytest.mark.parametrize("partial", [b"P", b"PROXY", b"PROXY TCP4 192.168.0.1 192.16",
                                     b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"])
def test_v1_truncated_asks_for_more(partial: bytes) -> None:
    assert parse(partial) is None


@pytest.mark.parametrize("line, why", [
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n", "lone CR or LF"),
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r443\r\n", "lone CR or LF"),
    (b"PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n", "single spaces"),
    (b"PROXY TCP5 192.168.0.1 192.168.0.11 56324 443\r\n", "TCP4|TCP6"),
    (b"PROXY TCP4 192.168.000.1 192.168.0.11 56324 443\r\n", "not TCP4 addresses"),
    (b"PROXY TCP4 ::1 ::1 56324 443\r\n", "not TCP4 addresses"),
    (b"PROXY TCP6 192.168.0.1 ::1 56324 443\r\n", "not TCP6 addresses"),
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n", "leading zeros"),
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n", "above 65535"),
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n", "leading zeros"),
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 1 \xff\r\n", "US-ASCII"),
])
def test_v1_malformed_lines_are_refused_with_the_reason(line: bytes, why: str) -> None:
    with pytest.raises(ProxyError, match=why):
        parse(line)


def test_v1_oversized_line_without_crlf_is_refused() -> None:
    with pytest.raises(ProxyError, match="longer than 107"):
        parse(b"PROXY UNKNOWN " + b"f" * (MAX_V1 - 14))
    # one byte less may still end with CRLF: wait
    assert parse(b"PROXY UNKNOWN " + b"f" * (MAX_V1 - 15)) is None


def test_not_a_header_is_refused_at_the_first_wrong_byte() -> None:
    with pytest.raises(ProxyError, match="no PROXY protocol header"):
        parse(b"USER anonymous\r\n")
    with pytest.raises(ProxyError, match="no PROXY protocol header"):
        parse(b"\x16\x03\x01")  # a TLS ClientHello on an implicit-TLS port
    assert starts_header(b"\r\n\r\n\x00") is None
    assert starts_header(b"PROX") is None
    assert starts_header(b"PROXY ") is True
    assert starts_header(SIGNATURE_V2) is True
    assert starts_header(b"\r\n\r\nX") is False


# -- version 2 ---------------------------------------------------------------------------

# A header HAProxy sent (send-proxy-v2), as dumped in public notes on the protocol:
# 172.19.0.1:42578 -> 172.19.0.3:80, followed by an HTTP request
HAPROXY_V2 = bytes.fromhex("0d0a0d0a000d0a515549540a 2111000c ac130001 ac130003 a652 0050")


def test_v2_tcp4_as_haproxy_sends_it() -> None:
    h = parse(HAPROXY_V2 + b"GET / HTTP/1.1\r\n")
    assert h is not None
    assert (h.version, h.command, h.length) == (2, "PROXY", 28)
    assert h.source == (V4("172.19.0.1"), 42578)
    assert h.destination == (V4("172.19.0.3"), 80)
    assert h.tlvs == ()


def test_v2_tcp6() -> None:
    raw = encode_v2(("2001:db8::7", 50000), ("2001:db8::1", 21))
    assert raw[13] == 0x21 and struct.unpack("!H", raw[14:16])[0] == 36
    h = parse(raw)
    assert h is not None and h.source == (V6("2001:db8::7"), 50000)
    assert h.destination == (V6("2001:db8::1"), 21)


def test_v2_local_command_is_a_health_check_with_the_connections_own_addresses() -> None:
    raw = SIGNATURE_V2 + b"\x20\x00\x00\x00"
    h = parse(raw + b"QUIT\r\n")
    assert h is not None and h.command == "LOCAL" and h.source is None and h.length == 16
    # LOCAL with an address block: the block is skipped, never used
    raw = SIGNATURE_V2 + b"\x20\x11\x00\x0c" + bytes(12)
    h = parse(raw)
    assert h is not None and h.command == "LOCAL" and h.source is None and h.length == 28


def test_v2_tlvs_are_read_in_order_and_unknown_ones_kept() -> None:
    tlvs = ((PP2_TYPE_AUTHORITY, b"ftp.example.org"), (PP2_TYPE_NOOP, b""),
            (PP2_TYPE_UNIQUE_ID, b"\x01" * 128), (PP2_TYPE_SSL, b"\x01\0\0\0\0"),
            (0xE3, b"custom"))
    h = parse(encode_v2(("198.51.100.7", 40000), ("203.0.113.10", 21), tlvs))
    assert h is not None and h.tlvs == tlvs
    assert h.tlv(PP2_TYPE_AUTHORITY) == b"ftp.example.org"
    assert h.tlv(0x30) is None


def test_v2_crc32c_is_checked() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    good = encode_v2(("198.51.100.7", 40000), ("203.0.113.10", 21),
                     ((PP2_TYPE_AUTHORITY, b"x"),), crc=True)
    h = parse(good)
    assert h is not None and h.tlv(PP2_TYPE_CRC32C) is not None
    bad = bytearray(good)
    bad[17] ^= 1  # the source address, covered by the checksum
    with pytest.raises(ProxyError, match="CRC32C"):
        parse(bytes(bad))


def test_v2_truncated_asks_for_more_until_the_announced_length() -> None:
    raw = encode_v2(("198.51.100.7", 40000), ("203.0.113.10", 21),
                    ((PP2_TYPE_AUTHORITY, b"ftp.example.org"),))
    for n in range(len(raw)):
        assert parse(raw[:n]) is None, n
    assert parse(raw) is not None


@pytest.mark.parametrize("head, why", [
    (b"\x11\x11\x00\x0c", "version 1"),
    (b"\x22\x11\x00\x0c", "unassigned command 2"),
    (b"\x21\x41\x00\x0c", "family/protocol byte 0x41"),
    (b"\x21\x13\x00\x0c", "family/protocol byte 0x13"),
    (b"\x21\x21\x00\x0c", "shorter than the 36"),
])
def test_v2_invalid_fixed_part_is_refused(head: bytes, why: str) -> None:
    with pytest.raises(ProxyError, match=why):
        parse(SIGNATURE_V2 + head + bytes(12))


def test_v2_truncated_tlv_is_refused() -> None:
    body = bytes(12) + b"\x02\x00\x10abc"  # announces 16 bytes, has 3
    with pytest.raises(ProxyError, match="announces 16 bytes"):
        parse(SIGNATURE_V2 + b"\x21\x11" + struct.pack("!H", len(body)) + body)
    body = bytes(12) + b"\x02\x00"  # not even a TLV header
    with pytest.raises(ProxyError, match="truncated"):
        parse(SIGNATURE_V2 + b"\x21\x11" + struct.pack("!H", len(body)) + body)


def test_v2_oversized_header_is_refused_before_it_is_read() -> None:
    head = SIGNATURE_V2 + b"\x21\x11" + struct.pack("!H", MAX_V2)
    with pytest.raises(ProxyError, match="larger than"):
        parse(head)  # only the 16 fixed bytes: refused without waiting for the rest


def test_v2_unix_and_unspec_families_fall_back_to_the_connections_addresses() -> None:
    h = parse(SIGNATURE_V2 + b"\x21\x31\x00\xd8" + bytes(216))
    assert h is not None and h.command == "PROXY" and h.source is None
    h = parse(SIGNATURE_V2 + b"\x21\x00\x00\x04junk")
    assert h is not None and h.source is None and h.length == 20


def test_encode_v1_round_trips() -> None:
    h = parse(encode_v1(("198.51.100.7", 1), ("203.0.113.10", 21)))
    assert h is not None and h.source == (V4("198.51.100.7"), 1)
    assert encode_v1(None, None) == b"PROXY UNKNOWN\r\n"
