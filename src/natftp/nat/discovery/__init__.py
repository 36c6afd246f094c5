"""Zero-config NAT: discover the public address and open the router (issue 8).

- :func:`discover` / :class:`DiscoveryConfig` / :class:`DiscoveryResult`: one round of
  asking UPnP IGD, NAT-PMP, PCP, cloud metadata and STUN (configured servers only).
- :func:`auto_masquerade` (one round applied to an AdvertisePolicy, logged) and
  :func:`rechecker` (the periodic task, same shape as ``nat.resolver.refresher``).
- :class:`PortMapper`: background mappings of the control port and passive range.

``python -m natftp.nat.discovery discover|recheck|map`` runs them from a shell.
"""

from natftp.nat.discovery.discover import (
    ALL_SOURCES,
    DEFAULT_RECHECK_INTERVAL,
    DEFAULT_TIMEOUT,
    DiscoveryConfig,
    DiscoveryResult,
    auto_masquerade,
    discover,
    rechecker,
)
from natftp.nat.discovery.mapping import (
    DEFAULT_LEASE,
    DEFAULT_PROTOCOLS,
    MANUAL_HINT,
    PortMapper,
    PortResult,
    State,
)


def import_clients() -> None:
    """Import the UPnP and HTTP clients (async-upnp-client, aiohttp) that a search, a
    mapping or a metadata query loads on first use: a server that will ask calls this
    before its rounds start, so that the ~0.2 s of import does not fall inside one."""
    import aiohttp  # noqa: F401
    import async_upnp_client.aiohttp  # noqa: F401
    import async_upnp_client.client_factory  # noqa: F401
    import async_upnp_client.exceptions  # noqa: F401
    import async_upnp_client.profiles.igd  # noqa: F401
    import async_upnp_client.search  # noqa: F401


__all__ = [
    "ALL_SOURCES", "DEFAULT_LEASE", "DEFAULT_PROTOCOLS", "DEFAULT_RECHECK_INTERVAL",
    "DEFAULT_TIMEOUT", "MANUAL_HINT", "DiscoveryConfig", "DiscoveryResult", "PortMapper",
    "PortResult", "State", "auto_masquerade", "discover", "import_clients", "rechecker",
]
