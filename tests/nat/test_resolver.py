"""Re-resolution of a masquerade hostname while the server runs (scenario S5)."""

from __future__ import annotations

import asyncio
import logging

from natftp.nat.policy import AdvertisePolicy
from natftp.nat.resolver import refresher, resolve_once, system_resolver
from natftp.proto.addr import IPAddress, ip


class ChangingDNS:
    """A resolver whose answer the test changes, or makes fail."""

    def __init__(self, answer: str) -> None:
        self.answer: str | None = answer
        self.calls = 0

    async def __call__(self, host: str) -> list[IPAddress]:
        self.calls += 1
        if self.answer is None:
            raise OSError("Temporary failure in name resolution")
        return [ip(self.answer)]


def test_refresher_follows_an_address_change_and_survives_dns_failure(caplog) -> None:
    async def scenario() -> None:
        dns = ChangingDNS("203.0.113.7")
        policy = AdvertisePolicy("home.example.net")
        task = asyncio.create_task(refresher(policy, interval=0.01, resolver=dns))
        try:
            for _ in range(200):
                if policy.masquerade_addresses:
                    break
                await asyncio.sleep(0.01)
            assert policy.masquerade_addresses == (ip("203.0.113.7"),)
            dns.answer = None
            calls = dns.calls
            while dns.calls < calls + 3:
                await asyncio.sleep(0.01)
            assert policy.masquerade_addresses == (ip("203.0.113.7"),)
            dns.answer = "203.0.113.99"
            for _ in range(200):
                if policy.masquerade_addresses == (ip("203.0.113.99"),):
                    break
                await asyncio.sleep(0.01)
            assert policy.masquerade_addresses == (ip("203.0.113.99"),)
        finally:
            task.cancel()

    with caplog.at_level(logging.WARNING, logger="natftp.nat"):
        asyncio.run(scenario())
    text = caplog.text
    assert "now resolves to 203.0.113.99 (was 203.0.113.7)" in text
    assert "lookup failed" in text and "keeping 203.0.113.7" in text


def test_system_resolver_resolves_localhost_for_real() -> None:
    policy = AdvertisePolicy("localhost")
    changed = asyncio.run(resolve_once(policy, system_resolver))
    assert changed is True
    assert all(a.is_loopback for a in policy.masquerade_addresses)


def test_literal_masquerade_is_not_resolved() -> None:
    dns = ChangingDNS("203.0.113.7")
    policy = AdvertisePolicy("192.0.2.1")
    assert asyncio.run(resolve_once(policy, dns)) is False
    assert dns.calls == 0
