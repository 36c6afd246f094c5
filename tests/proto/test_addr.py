"""PORT/EPRT/227/229 encode and decode round-trips, malformed input, classification."""

from __future__ import annotations

import ipaddress

import pytest

from natftp.proto import addr
from natftp.proto.addr import AddrClass, AddressError


@pytest.mark.parametrize(("host", "port"), [("127.0.0.1", 21), ("192.168.10.2", 65535),
                                            ("0.0.0.1", 1), ("255.255.255.255", 256)])
def test_port_and_227_round_trip(host: str, port: int) -> None:
    assert addr.parse_port_arg(addr.format_port_arg(host, port)) == (
        ipaddress.IPv4Address(host), port)
    text = addr.format_227(host, port)
    assert text.startswith("Entering Passive Mode (") and text.endswith(").")
    assert addr.parse_227(text) == (ipaddress.IPv4Address(host), port)


def test_227_unwraps_a_mapped_address_and_refuses_ipv6() -> None:
    assert addr.format_227("::ffff:127.0.0.1", 1025) == \
        "Entering Passive Mode (127,0,0,1,4,1)."
    with pytest.raises(AddressError):
        addr.format_227("::1", 21)
    with pytest.raises(AddressError):
        addr.format_port_arg("127.0.0.1", 70000)


@pytest.mark.parametrize("text", ["227 Entering Passive Mode 10,0,0,1,4,1",
                                  "227 =10, 0, 0, 1, 4, 1", "227 ok (10,0,0,1,4,1)"])
def test_227_is_scanned_not_parsed_by_position(text: str) -> None:
    assert addr.parse_227(text) == (ipaddress.IPv4Address("10.0.0.1"), 1025)


@pytest.mark.parametrize("bad", ["", "1,2,3,4,5", "1,2,3,4,5,6,7", "a,b,c,d,e,f",
                                 "256,0,0,1,0,21", "1,2,3,4,5,300", "1.2.3.4,5,6"])
def test_malformed_port_arguments(bad: str) -> None:
    with pytest.raises(AddressError):
        addr.parse_port_arg(bad)


@pytest.mark.parametrize("bad", ["227 no numbers", "227 (1,2,3,4,5)", "227 (999,1,1,1,1,1)"])
def test_malformed_227(bad: str) -> None:
    with pytest.raises(AddressError):
        addr.parse_227(bad)


@pytest.mark.parametrize(("host", "port"), [("127.0.0.1", 5000), ("::1", 6446),
                                            ("2001:db8::7", 65535)])
def test_eprt_round_trip(host: str, port: int) -> None:
    arg = addr.format_eprt_arg(host, port)
    assert addr.parse_eprt_arg(arg) == (ipaddress.ip_address(host), port)


def test_eprt_other_delimiter_and_mapped() -> None:
    assert addr.parse_eprt_arg("!1!10.0.0.1!21!") == (ipaddress.IPv4Address("10.0.0.1"), 21)
    assert addr.format_eprt_arg("::ffff:10.0.0.1", 21) == "|1|10.0.0.1|21|"


@pytest.mark.parametrize("bad", ["", "|", "|3|1.2.3.4|21|", "|1|::1|21|", "|2|1.2.3.4|21|",
                                 "|1|1.2.3.4|0|", "|1|1.2.3.4|65536|", "|1|host|21|",
                                 "|1|1.2.3.4|21", " 1 1.2.3.4 21 "])
def test_malformed_eprt(bad: str) -> None:
    with pytest.raises(AddressError):
        addr.parse_eprt_arg(bad)


def test_229_round_trip_and_errors() -> None:
    assert addr.format_229(6446) == "Entering Extended Passive Mode (|||6446|)"
    assert addr.parse_229("229 Entering Extended Passive Mode (|||6446|)") == 6446
    assert addr.parse_229("229 x (!!!21!)") == 21
    for bad in ("229 (|||0|)", "229 (||6446|)", "229 nothing", "229 (|||70000|)"):
        with pytest.raises(AddressError):
            addr.parse_229(bad)


@pytest.mark.parametrize(("a", "c"), [
    ("0.0.0.0", AddrClass.UNSPECIFIED), ("::", AddrClass.UNSPECIFIED),
    ("127.0.0.1", AddrClass.LOOPBACK), ("::1", AddrClass.LOOPBACK),
    ("10.1.2.3", AddrClass.PRIVATE), ("172.16.0.2", AddrClass.PRIVATE),
    ("192.168.10.2", AddrClass.PRIVATE), ("fd00::1", AddrClass.PRIVATE),
    ("100.64.0.1", AddrClass.CGNAT), ("169.254.1.1", AddrClass.LINK_LOCAL),
    ("fe80::1", AddrClass.LINK_LOCAL), ("::ffff:10.0.0.1", AddrClass.MAPPED),
    ("224.0.0.1", AddrClass.MULTICAST), ("198.51.100.7", AddrClass.PUBLIC),
    ("8.8.8.8", AddrClass.PUBLIC), ("2001:db8::1", AddrClass.PUBLIC),
])
def test_classify(a: str, c: AddrClass) -> None:
    assert addr.classify(a) is c


def test_ip_unmaps_and_drops_zone_and_pasv_usable() -> None:
    assert addr.ip("::ffff:127.0.0.1") == ipaddress.IPv4Address("127.0.0.1")
    assert addr.ip("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")
    assert addr.is_public("198.51.100.1") and not addr.is_public("10.0.0.1")
    assert addr.pasv_address_usable("10.0.0.1", "::ffff:10.0.0.1")
    assert not addr.pasv_address_usable("0.0.0.0", "10.0.0.1")
