"""Pure pieces of zero-config NAT: the route table, port ranges, config checks."""

from __future__ import annotations

import time

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


# -- natftp serve's keys and flags (issue 8) ---------------------------------------------

def _cfg(tmp_path, **nat):  # type: ignore[no-untyped-def]
    from natftp.server.config import from_dict

    listen = nat.pop("listen", ["[::]:2121"])
    extra = {"passive": {"ports": nat.pop("passive")}} if "passive" in nat else {}
    return from_dict({"root": str(tmp_path), "listen": listen, "nat": nat, **extra})


@pytest.mark.parametrize(("listen", "masq", "discover"), [
    (["[::]:2121"], None, True), (["0.0.0.0:21"], None, True),
    (["172.16.0.2:21"], None, True), (["127.0.0.1:0"], None, False),
    (["127.0.0.1:0", "[::1]:0"], None, False), (["[::]:2121"], "off", False),
    (["[::]:2121"], "203.0.113.7", False), (["127.0.0.1:0"], "auto", True),
])
def test_masquerade_auto_is_the_default_beyond_loopback(tmp_path, listen, masq,  # type: ignore[no-untyped-def]
                                                        discover) -> None:
    nat = {"listen": listen, **({"masquerade": masq} if masq else {})}
    cfg = _cfg(tmp_path, **nat)
    assert cfg.nat.zeroconf.discover is discover
    assert cfg.nat.masquerade == (masq if masq not in (None, "off", "auto") else None)


@pytest.mark.parametrize(("nat", "expect"), [
    ({"port_mapping": "auto"}, ["nat.port_mapping (--open-router)", "passive.ports"]),
    ({"port_mapping": "yes"}, ["nat.port_mapping", '"yes"', 'use "auto"']),
    ({"port_mapping": "auto", "passive": "30000-30001", "advertised_ports": "31000-31001"},
     ["nat.port_mapping", "nat.advertised_ports"]),
    ({"stun_servers": "stun.example.org"}, ["nat.stun_servers (--stun)", "a list"]),
    ({"stun_servers": ["host:port"]}, ["nat.stun_servers", "HOST[:PORT]"]),
    ({"discovery_sources": ["upnp", "bonjour"]}, ["nat.discovery_sources", '"bonjour"',
                                                  "upnp, natpmp, pcp, metadata, stun"]),
    ({"discovery_sources": []}, ["nat.discovery_sources", "empty"]),
    ({"discovery_timeout": 0}, ["nat.discovery_timeout", "positive"]),
    ({"discovery_timeout": 60}, ["nat.discovery_timeout", "above 30 s"]),
    ({"recheck_interval": -1}, ["nat.recheck_interval", "positive"]),
    ({"mapping_protocols": ["igd"]}, ["nat.mapping_protocols", "upnp, pcp, natpmp"]),
    ({"mapping_lease": -5}, ["nat.mapping_lease", "0-604800"]),
    ({"recheck_intervall": 5}, ["nat.recheck_intervall", "did you mean nat.recheck_interval"]),
])
def test_zeroconf_keys_are_validated(tmp_path, nat, expect) -> None:  # type: ignore[no-untyped-def]
    from natftp.server.config import ConfigError

    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, **dict(nat))
    for text in expect:
        assert text in str(e.value), str(e.value)
    assert "fix:" in str(e.value)


def test_zeroconf_keys_reach_the_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    z = _cfg(tmp_path, masquerade="auto", stun_servers=["198.51.100.2", "[2001:db8::1]:3479"],
             discovery_sources=["metadata", "stun"], discovery_timeout=1.5,
             recheck_interval=30, port_mapping="auto", passive="30000-30009",
             mapping_protocols=["natpmp"], mapping_lease=600,
             mapping_stop_timeout=2).nat.zeroconf
    assert (z.discover, z.port_mapping) == (True, True)
    assert z.stun_servers == ("198.51.100.2", "[2001:db8::1]:3479")
    assert z.sources == ("metadata", "stun") and z.mapping_protocols == ("natpmp",)
    assert (z.discovery_timeout, z.recheck_interval, z.mapping_lease,
            z.mapping_stop_timeout) == (1.5, 30.0, 600, 2.0)


def test_serve_help_shows_the_flags() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "natftp", "serve", "--help"],
                         capture_output=True, text=True, timeout=30,
                         env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    for flag in ("--masquerade", "auto|off|ADDR", "--open-router", "--stun"):
        assert flag in out, out


def test_loopback_server_starts_no_discovery(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from natftp.server.app import Server

    async def main() -> None:
        srv = Server(_cfg(tmp_path, listen=["127.0.0.1:0"]))
        await srv.start()
        try:
            assert not srv.zeroconf.active and srv.zeroconf.mapper is None
            assert not srv.zeroconf._tasks and srv.pool.prefer is None
        finally:
            await srv.stop()

    asyncio.run(main())


def test_pool_prefers_mapped_ports() -> None:
    from natftp.nat.ports import PortPool

    pool = PortPool((30000, 30004))
    assert list(pool.candidates()) == [30000, 30001, 30002, 30003, 30004]
    pool.prefer = {30003, 30004}.__contains__
    assert list(pool.candidates()) == [30003, 30004, 30000, 30001, 30002]
    pool.take(30003)
    assert list(pool.candidates()) == [30004, 30000, 30001, 30002]


# -- issue 17: what discovery says about a private router, a second NAT, a lease's end -------

def _result(router=None, public=None, public_source="stun"):  # type: ignore[no-untyped-def]
    from natftp.nat.discovery import DiscoveryResult
    from natftp.proto.addr import ip

    tried = [("upnp", f"answered {router}"), ("metadata", "aws: no answer"),
             ("stun", "no servers configured (nat.stun_servers)")]
    return DiscoveryResult(ip(public) if public else None,
                           public_source if public else None, tried,
                           "STUN server 203.0.113.2:3478" if public else "",
                           ip(router) if router else None, "upnp" if router else None,
                           "IGD http://172.16.0.1:1/rootDesc.xml" if router else "")


def test_message_for_a_router_with_a_private_wan_address() -> None:
    text = _result(router="192.168.10.1").message()
    assert text.startswith("router WAN address 192.168.10.1 (from upnp, IGD http://")
    assert "which is private: clients beyond this host's networks" in text
    assert ("no source told a public address (metadata: aws: no answer; stun: no servers "
            "configured (nat.stun_servers))") in text
    assert "nat.stun_servers (or nat.masquerade)" in text
    assert "upnp: answered" not in text  # only the outside sources are listed


def test_message_for_a_second_nat_names_what_to_forward() -> None:
    r = _result(router="192.168.10.1", public="203.0.113.1")
    assert r.second_nat
    text = r.message(forward_ports=[2121, *range(30000, 30010)])
    assert text.startswith("public address 203.0.113.1 (from stun, STUN server "
                           "203.0.113.2:3478); the router's WAN address is 192.168.10.1 "
                           "(from upnp, IGD")
    assert "a second NAT lies between the router and the internet" in text
    assert "Public clients are told 203.0.113.1" in text
    assert "the router's WAN side) 192.168.10.1" in text
    assert ("forward TCP port(s) 2121, 30000-30009 to 192.168.10.1, the same port "
            "numbers") in text
    assert "the control port and the passive ports" in r.message()


def test_message_for_a_public_router_is_unchanged() -> None:
    r = _result(router="198.51.100.1", public="198.51.100.1", public_source="upnp")
    assert not r.second_nat
    assert r.message().startswith("public address 198.51.100.1 (from upnp, ")
    assert "second NAT" not in r.message()


def test_lease_end_says_when_the_router_drops_what_is_left() -> None:
    from natftp.nat.discovery.mapping import PortResult, lease_end

    now = 1_800_000_000.0
    one = [PortResult(30000, expires=now + 3600)]
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now + 3600))
    assert lease_end(one, now) == f"their lease ends at {clock} (in 3600 s)"
    span = [PortResult(30000, expires=now + 100), PortResult(30001, expires=now + 160)]
    assert lease_end(span, now).startswith("their lease ends between ")
    assert lease_end(span, now).endswith("(in 160 s)")
    permanent = [PortResult(21, expires=None)]
    assert lease_end(permanent, now) == ("some are permanent: remove them in the router's "
                                         "settings")


def test_mapper_checks_its_window_and_control_ports() -> None:
    with pytest.raises(ValueError, match="window"):
        PortMapper([21], window=0)
    with pytest.raises(ValueError, match="control port"):
        PortMapper([30000, 30001], control=[21])
