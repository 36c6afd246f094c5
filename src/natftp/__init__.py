"""natftp: FTP that just works through NAT and firewalls."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_CLIENT_NAMES = ("Client", "BlockingClient", "SyncClient")


def __getattr__(name: str) -> Any:
    # `natftp.Client` without importing the client (and asyncio) for every user of natftp
    if name in _CLIENT_NAMES:
        from natftp import client

        return getattr(client, name)
    raise AttributeError(f"module 'natftp' has no attribute {name!r}")
