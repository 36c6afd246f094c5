"""Pure pieces of zero-config NAT: the route table, port ranges, config checks."""

from __future__ import annotations

import pytest

from natftp.nat.discovery import DiscoveryConfig, PortMapper
from natftp.nat.discovery.gateway import parse_route_table
from natftp.nat.discovery.mapping import ranges

ROUTES = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010010AC\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000010AC\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
"""


def test_default_gateway_lowest_metric() -> None:
    assert parse_route_table(ROUTES) == "172.16.0.1"


def test_no_default_route() -> None:
    assert parse_route_table(ROUTES.splitlines()[0] + "\n" + ROUTES.splitlines()[3]) is None
    assert parse_route_table("") is None


def test_ranges() -> None:
    assert ranges([21, 30002, 30000, 30001, 30005]) == "21, 30000-30002, 30005"
    assert ranges([]) == ""


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="unknown discovery source"):
        DiscoveryConfig(sources=("upnp", "bonjour"))
    with pytest.raises(ValueError, match="positive"):
        DiscoveryConfig(timeout=0)
    with pytest.raises(ValueError, match="not TCP ports"):
        PortMapper([0, 21])
    with pytest.raises(ValueError, match="unknown mapping protocol"):
        PortMapper([21], protocols=("upnp", "smoke-signals"))
