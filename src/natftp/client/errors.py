"""The client's exceptions (defined with the I/O layer they come from,
:mod:`natftp.ftpio.errors`; this is their public name)."""

from __future__ import annotations

from natftp.ftpio.errors import (
    Attempt,
    ConnectionFailed,
    ConnectionLost,
    DataConnectionError,
    FTPError,
    FTPTimeout,
    LoginError,
    PermanentError,
    ProtocolError,
    ReplyError,
    TimeoutError,
    TLSError,
    TransientError,
    reply_error,
)

__all__ = [
    "Attempt", "ConnectionFailed", "ConnectionLost", "DataConnectionError", "FTPError",
    "FTPTimeout", "LoginError", "PermanentError", "ProtocolError", "ReplyError",
    "TLSError", "TimeoutError", "TransientError", "reply_error",
]
