"""natftp's FTP/FTPS client: async :class:`Client` and its blocking twin.

    async with Client("ftp://user:pass@host/") as ftp:
        await ftp.download("dir/file.bin", "file.bin")

    with BlockingClient("ftpes://user:pass@host/") as ftp:
        for entry in ftp.list("dir"):
            print(entry.name, entry.size)

Data connections get through NAT by themselves (EPSV, then PASV with the advertised
address checked, then active mode); see ``docs/client.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from natftp.client._async import Client
from natftp.ftpio.errors import (
    Attempt,
    CertificateError,
    ConnectionFailed,
    ConnectionLost,
    DataConnectionError,
    FTPError,
    FTPTimeout,
    LoginError,
    NotTLSError,
    PermanentError,
    ProtocolError,
    ReplyError,
    TimeoutError,
    TLSError,
    TransientError,
)
from natftp.proto.listparse import Entry

if TYPE_CHECKING:
    from natftp.client._sync import BlockingClient, SyncClient
    from natftp.client.mirror import Action, MirrorError, MirrorResult

#: imported on first use: `natftp ls` in a script loop needs neither the blocking twin
#: (threads) nor the mirror
_LAZY = {"BlockingClient": "_sync", "SyncClient": "_sync", "Action": "mirror",
         "MirrorError": "mirror", "MirrorResult": "mirror"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"natftp.client.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Action", "Attempt", "BlockingClient", "CertificateError", "Client",
    "ConnectionFailed", "ConnectionLost", "DataConnectionError", "Entry", "FTPError",
    "FTPTimeout", "LoginError", "MirrorError", "MirrorResult", "NotTLSError",
    "PermanentError", "ProtocolError", "ReplyError", "SyncClient", "TLSError",
    "TimeoutError", "TransientError",
]
