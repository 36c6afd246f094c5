"""Keep a masquerade hostname's addresses current while the server runs (scenario S5).

ProFTPD resolves ``MasqueradeAddress`` once at start; a home server on a dynamic-DNS name
then advertises a stale address after the ISP changes it. This task re-resolves on an
interval, keeps the last good answer when DNS fails, and logs every change.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from natftp.nat.policy import AdvertisePolicy
from natftp.proto.addr import IPAddress, ip

log = logging.getLogger("natftp.nat")

Resolver = Callable[[str], Awaitable[list[IPAddress]]]


async def system_resolver(host: str) -> list[IPAddress]:
    """Resolve with the system resolver (getaddrinfo in the loop's executor)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for family, _t, _p, _c, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            a = ip(str(sockaddr[0]))
            if a not in seen:
                seen.append(a)
    return seen


async def resolve_at_start(policy: AdvertisePolicy, resolver: Resolver = system_resolver,
                           timeout: float = 5.0) -> str | None:
    """The first lookup, before the server serves: None when the hostname resolved (the
    policy now holds its addresses), else why it did not.

    Later lookups keep the last good answer, but at start there is none: a name that
    resolves nowhere (a typo such as ``--masquerade yes``) would leave every client outside
    told the local address, so the caller refuses to start instead of logging it.
    """
    host = policy.masquerade
    if host is None or not policy.masquerade_is_hostname:
        return None
    try:
        answers = await asyncio.wait_for(resolver(host), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as e:
        return e.strerror or str(e)
    policy.update(answers)
    if not policy.masquerade_addresses:
        return "no usable address in the answer"
    return None


async def resolve_once(policy: AdvertisePolicy, resolver: Resolver = system_resolver,
                       timeout: float = 5.0) -> bool:
    """Resolve the masquerade hostname once; True if the advertised address changed."""
    host = policy.masquerade
    if host is None or not policy.masquerade_is_hostname:
        return False
    before = policy.masquerade_addresses
    try:
        answers = await asyncio.wait_for(resolver(host), timeout)
    except (TimeoutError, OSError) as e:
        if before:
            log.warning("masquerade %s: lookup failed (%s); keeping %s", host, e,
                        ", ".join(map(str, before)))
        else:
            log.error("masquerade %s: lookup failed (%s) and no earlier answer; PASV "
                      "falls back to the local address", host, e)
        return False
    if policy.update(answers):
        log.warning("masquerade %s now resolves to %s (was %s)", host,
                    ", ".join(map(str, policy.masquerade_addresses)),
                    ", ".join(map(str, before)) or "unresolved")
        return True
    return False


async def refresher(policy: AdvertisePolicy, interval: float = 60.0,
                    resolver: Resolver = system_resolver) -> None:
    """Re-resolve forever every ``interval`` seconds; cancel the task to stop it."""
    while True:
        await resolve_once(policy, resolver)
        await asyncio.sleep(interval)


async def follow(policy: AdvertisePolicy, interval: float,
                 resolver: Resolver = system_resolver) -> asyncio.Task[None] | None:
    """What the server and the gateway do at start: resolve a masquerade hostname once
    (so the first PASV already gets it), then keep it current in a task the caller owns
    and cancels. None when the masquerade is not a hostname."""
    if not policy.masquerade_is_hostname:
        return None
    if not policy.masquerade_addresses:  # the server's resolve_at_start may have done it
        await resolve_once(policy, resolver)
    return asyncio.get_running_loop().create_task(refresher(policy, interval, resolver))
