"""The advertise policy, table-tested: which address each class of client is told."""

from __future__ import annotations

import ipaddress

import pytest

from natftp.nat.policy import AdvertisePolicy, Discovered, NoUsableAddress, Override, Rule
from natftp.proto.addr import ip

LAN = [ipaddress.ip_network("172.16.0.0/24"), ipaddress.ip_network("127.0.0.0/8")]

CASES = [
    # (masquerade, overrides, local, peer, expected, warn)
    # S1 contest: client on the router's far side (private, not our LAN) -> masquerade
    ("192.168.10.1", [], "172.16.0.2", "192.168.10.2", "192.168.10.1", False),
    # S1 without masquerade: local address (the router's helper rewrites it)
    (None, [], "172.16.0.2", "192.168.10.2", "172.16.0.2", False),
    # S2: public client, masquerade set -> public address
    ("203.0.113.7", [], "172.16.0.2", "198.51.100.9", "203.0.113.7", False),
    # S2 trap: public client, no masquerade -> local address, flagged for a warning
    (None, [], "172.16.0.2", "198.51.100.9", "172.16.0.2", True),
    # S6: LAN client of the same server is told the LAN address despite masquerade
    ("203.0.113.7", [], "172.16.0.2", "172.16.0.50", "172.16.0.2", False),
    # loopback client always gets the loopback address
    ("203.0.113.7", [], "127.0.0.1", "127.0.0.1", "127.0.0.1", False),
    # dual-stack socket: an IPv4-mapped local address is unwrapped
    (None, [], "::ffff:127.0.0.1", "::ffff:127.0.0.1", "127.0.0.1", False),
    # an override wins over everything
    ("203.0.113.7", [Override.parse(["10.8.0.0/16"], "10.8.0.1")], "172.16.0.2",
     "10.8.3.4", "10.8.0.1", False),
    ("203.0.113.7", [Override.parse(["198.51.100.0/24"], "192.0.2.44")], "172.16.0.2",
     "198.51.100.9", "192.0.2.44", False),
    # CGNAT client not on our networks -> masquerade
    ("203.0.113.7", [], "172.16.0.2", "100.64.3.3", "203.0.113.7", False),
    # IPv6 public client with only an IPv4 masquerade -> its own local v6 address
    ("203.0.113.7", [], "2001:db8::2", "2001:db8:1::9", "2001:db8::2", False),
]


@pytest.mark.parametrize(("masq", "overrides", "local", "peer", "expected", "warn"), CASES)
def test_advertised_address_per_client(masq, overrides, local, peer, expected, warn) -> None:
    policy = AdvertisePolicy(masq, overrides, local_networks=LAN)
    decision = policy.advertise(local, peer)
    assert decision.address == ip(expected), decision.reason
    assert decision.warn_unreachable is warn


def test_unspecified_local_without_masquerade_is_refused_not_advertised() -> None:
    with pytest.raises(NoUsableAddress):
        AdvertisePolicy(None, local_networks=LAN).advertise("0.0.0.0", "198.51.100.9")


def test_unspecified_local_with_masquerade_uses_masquerade() -> None:
    d = AdvertisePolicy("203.0.113.7", local_networks=LAN).advertise("0.0.0.0", "198.51.100.9")
    assert d.address == ip("203.0.113.7")


def test_hostname_masquerade_waits_for_resolution_then_follows_changes() -> None:
    policy = AdvertisePolicy("home.example.net", local_networks=LAN)
    assert policy.masquerade_is_hostname
    assert policy.advertise("172.16.0.2", "198.51.100.9").address == ip("172.16.0.2")
    assert policy.update([ip("203.0.113.7")]) is True
    assert policy.advertise("172.16.0.2", "198.51.100.9").address == ip("203.0.113.7")
    assert policy.update([ip("203.0.113.7")]) is False
    assert policy.update([]) is False  # DNS outage keeps the last good answer
    assert policy.advertise("172.16.0.2", "198.51.100.9").address == ip("203.0.113.7")
    assert policy.update([ip("203.0.113.99")]) is True
    assert policy.advertise("172.16.0.2", "198.51.100.9").address == ip("203.0.113.99")


def test_masquerade_update_never_installs_unspecified() -> None:
    policy = AdvertisePolicy("home.example.net")
    assert policy.update([ip("0.0.0.0")]) is False
    assert policy.masquerade_addresses == ()


# -- zero-config discovery (issue 17): a router whose WAN address is private -------------

ROUTER_PRIVATE = Discovered(ip("192.168.10.1"), "upnp")
SECOND_NAT = Discovered(ip("192.168.10.1"), "upnp", ip("203.0.113.1"), "stun")
ROUTER_PUBLIC = Discovered(ip("198.51.100.1"), "upnp", ip("198.51.100.1"), "upnp")
STUN_ONLY = Discovered(None, "", ip("203.0.113.1"), "stun")

DISCOVERED_CASES = [
    # (found, peer, expected address, rule, warn)
    # S1, the contest: the router's private WAN address for the client on its WAN side
    (ROUTER_PRIVATE, "192.168.10.2", "192.168.10.1", Rule.ROUTER_WAN, False),
    (ROUTER_PRIVATE, "100.64.3.3", "192.168.10.1", Rule.ROUTER_WAN, False),
    # ... and for a public client too (better than the LAN address), flagged
    (ROUTER_PRIVATE, "198.51.100.9", "192.168.10.1", Rule.ROUTER_WAN, True),
    # the server's own networks keep the local address
    (ROUTER_PRIVATE, "172.16.0.50", "172.16.0.2", Rule.LOCAL, False),
    (ROUTER_PRIVATE, "127.0.0.1", "127.0.0.1", Rule.LOCAL, False),
    # a STUN server saw another public address: a second NAT lies between
    (SECOND_NAT, "198.51.100.9", "203.0.113.1", Rule.PUBLIC, False),
    (SECOND_NAT, "192.168.10.2", "192.168.10.1", Rule.ROUTER_WAN, False),
    (SECOND_NAT, "172.16.0.50", "172.16.0.2", Rule.LOCAL, False),
    # a router with a public WAN address: everyone beyond our networks gets it
    (ROUTER_PUBLIC, "198.51.100.9", "198.51.100.1", Rule.PUBLIC, False),
    (ROUTER_PUBLIC, "192.168.10.2", "198.51.100.1", Rule.ROUTER_WAN, False),
    # only STUN (or metadata) answered: the public address for everyone beyond
    (STUN_ONLY, "192.168.10.2", "203.0.113.1", Rule.PUBLIC, False),
    (STUN_ONLY, "198.51.100.9", "203.0.113.1", Rule.PUBLIC, False),
]


@pytest.mark.parametrize(("found", "peer", "expected", "rule", "warn"), DISCOVERED_CASES)
def test_discovered_addresses_per_client(found, peer, expected, rule, warn) -> None:
    policy = AdvertisePolicy(None, local_networks=LAN)
    assert policy.set_discovered(found) is True
    d = policy.advertise("172.16.0.2" if peer != "127.0.0.1" else "127.0.0.1", peer)
    assert (d.address, d.rule, d.warn_unreachable) == (ip(expected), rule, warn), d.reason


def test_reasons_say_what_lies_between() -> None:
    policy = AdvertisePolicy(None, local_networks=LAN)
    policy.set_discovered(SECOND_NAT)
    public = policy.advertise("172.16.0.2", "198.51.100.9").reason
    assert "203.0.113.1 (from stun)" in public and "second NAT" in public
    assert "192.168.10.1 is private" in public
    wan = policy.advertise("172.16.0.2", "192.168.10.2").reason
    assert "router's WAN address 192.168.10.1 (from upnp)" in wan
    policy = AdvertisePolicy(None, local_networks=LAN)
    policy.set_discovered(ROUTER_PRIVATE)
    lone = policy.advertise("172.16.0.2", "198.51.100.9").reason
    assert "another NAT lies beyond" in lone and "nat.stun_servers" in lone


def test_configured_masquerade_and_overrides_win_over_discovery() -> None:
    policy = AdvertisePolicy("203.0.113.7", [Override.parse(["10.8.0.0/16"], "10.8.0.1")],
                             local_networks=LAN)
    policy.set_discovered(SECOND_NAT)
    assert policy.advertise("172.16.0.2", "192.168.10.2").rule is Rule.MASQUERADE
    assert policy.advertise("172.16.0.2", "198.51.100.9").address == ip("203.0.113.7")
    assert policy.advertise("172.16.0.2", "10.8.1.1").rule is Rule.OVERRIDE


def test_set_discovered_keeps_the_last_answer_and_refuses_unspecified() -> None:
    policy = AdvertisePolicy(None, local_networks=LAN)
    assert policy.set_discovered(Discovered()) is False  # nothing found: nothing changes
    assert policy.discovered is None
    assert policy.set_discovered(ROUTER_PRIVATE) is True
    assert policy.set_discovered(ROUTER_PRIVATE) is False
    assert policy.set_discovered(Discovered()) is False
    assert policy.discovered == ROUTER_PRIVATE
    with pytest.raises(ValueError, match="unspecified"):
        policy.set_discovered(Discovered(ip("0.0.0.0"), "natpmp"))
    assert policy.set_discovered(SECOND_NAT) is True and policy.discovered.second_nat


def test_per_class_covers_every_class_with_its_decision() -> None:
    policy = AdvertisePolicy(None, [Override.parse(["10.8.0.0/16"], "10.8.0.1")],
                             local_networks=LAN)
    policy.set_discovered(SECOND_NAT)
    rows = {c.client.label: c for c in policy.per_class(
        lambda peer: ip("127.0.0.1") if peer.is_loopback else
        (ip("172.16.0.2") if peer.version == 4 else None))}
    told = {label: (c.decision.address if c.decision else c.note) for label, c in rows.items()}
    beyond = "private client beyond this host's networks (e.g. on the router's WAN side)"
    assert told["LAN client on 172.16.0.0/24"] == ip("172.16.0.2")
    assert told[beyond] == ip("192.168.10.1")
    assert told["public client"] == "no route from this host"  # the IPv6 one came last
    assert told["client in override 10.8.0.0/16"] == ip("10.8.0.1")
    public_v4 = next(c for c in policy.per_class(lambda p: ip("172.16.0.2"))
                     if c.client.sample == ip("198.51.100.77"))
    assert public_v4.decision is not None and public_v4.decision.address == ip("203.0.113.1")
    # the "beyond" sample is never on one of the server's own networks
    policy = AdvertisePolicy(None, local_networks=[ipaddress.ip_network("192.168.10.0/24")])
    sample = next(c.sample for c in policy.client_classes()
                  if c.label.startswith("private client"))
    assert sample == ip("10.254.254.2")
