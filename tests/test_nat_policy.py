"""The advertise policy, table-tested: which address each class of client is told."""

from __future__ import annotations

import ipaddress

import pytest

from natftp.nat.policy import AdvertisePolicy, NoUsableAddress, Override
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
