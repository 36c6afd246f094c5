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
from natftp.nat.discovery.upnp import import_clients

__all__ = [
    "ALL_SOURCES", "DEFAULT_LEASE", "DEFAULT_PROTOCOLS", "DEFAULT_RECHECK_INTERVAL",
    "DEFAULT_TIMEOUT", "MANUAL_HINT", "DiscoveryConfig", "DiscoveryResult", "PortMapper",
    "PortResult", "State", "auto_masquerade", "discover", "import_clients", "rechecker",
]
