"""HOST:PORT and LOW-HIGH, as every option and config key writes them."""

from __future__ import annotations

import pytest

from natftp.proto.hostport import (
    HostPortError,
    PortRangeError,
    format_hostport,
    format_port_range,
    parse_hostport,
    parse_listen,
    parse_port_range,
)

REQUIRED = [
    ("127.0.0.1:21", ("127.0.0.1", 21)),
    ("ftp.example.net:2121", ("ftp.example.net", 2121)),
    ("[::1]:2121", ("::1", 2121)),
    (":::2121", ("::", 2121)),  # a bare IPv6 address: the last colon separates the port
    (":2121", ("", 2121)),
    (" 10.0.0.1:1 ", ("10.0.0.1", 1)),
]


@pytest.mark.parametrize(("text", "want"), REQUIRED)
def test_hostport_with_required_port(text: str, want: tuple[str, int]) -> None:
    assert parse_hostport(text) == want


@pytest.mark.parametrize(("text", "why"), [
    ("127.0.0.1", "no port given"), ("[::1]", "no port given"), ("h:0", "not 1-65535"),
    ("h:65536", "not 1-65535"), ("h:x", "not 1-65535"), ("[::1", "no closing"),
    ("[::1]2121", "not :PORT"), ("h:", "not 1-65535"), ("h:²", "not 1-65535"),
])
def test_hostport_errors(text: str, why: str) -> None:
    with pytest.raises(HostPortError, match=why):
        parse_hostport(text)


def test_hostport_with_default_port_and_zero() -> None:
    assert parse_hostport("10.0.0.2", default_port=21) == ("10.0.0.2", 21)
    assert parse_hostport("fd00::2", default_port=21) == ("fd00::2", 21)  # all host
    assert parse_hostport("[fd00::2]:2121", default_port=21) == ("fd00::2", 2121)
    assert parse_hostport("0.0.0.0:0", allow_zero=True) == ("0.0.0.0", 0)
    assert format_hostport("::1", 21) == "[::1]:21" and format_hostport("h", 1) == "h:1"


@pytest.mark.parametrize(("text", "want"), [
    ("30000-30099", (30000, 30099)), (" 21 ", (21, 21)), ("50000:50100", (50000, 50100)),
    ("1-65535", (1, 65535)), ("5 - 6", (5, 6)),
])
def test_port_range(text: str, want: tuple[int, int]) -> None:
    assert parse_port_range(text) == want


@pytest.mark.parametrize(("text", "why"), [
    ("3100-3000", "LOW above HIGH"), ("30000-70000", "outside 1-65535"), ("0-5", "outside"),
    ("a-b", "not LOW-HIGH"), ("", "not LOW-HIGH"), ("1-2-3", "not LOW-HIGH"),
    ("1-", "not LOW-HIGH"),
])
def test_port_range_errors(text: str, why: str) -> None:
    with pytest.raises(PortRangeError, match=why):
        parse_port_range(text)


def test_format_port_range() -> None:
    assert format_port_range((5, 5)) == "5" and format_port_range((1, 2)) == "1-2"


@pytest.mark.parametrize(("text", "want"), [
    ("2200", ("::", 2200)), (":2200", ("::", 2200)), ("0", ("::", 0)),
    ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:21", ("::1", 21)), (":::2121", ("::", 2121)),
])
def test_listen_address(text: str, want: tuple[str, int]) -> None:
    """serve's and the gateway's --listen: a bare port means every address."""
    assert parse_listen(text) == want


def test_listen_refuses_names_with_the_fix() -> None:
    with pytest.raises(HostPortError) as e:
        parse_listen("localhost:2150")
    assert e.value.reason.startswith("'localhost' is not an IP address")
    assert e.value.fix == ("write 127.0.0.1:2150 or [::1]:2150 for loopback, :2150 for every "
                           "address")


def test_a_port_alone_is_not_an_endpoint() -> None:
    with pytest.raises(HostPortError, match="write HOST:2200"):
        parse_hostport("2200")
