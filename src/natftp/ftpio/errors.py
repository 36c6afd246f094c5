"""The client side's exceptions: one tree, each carrying what the server said.

Raised by the control and data channels here and by the client on top of them, caught by
the doctor and the gateway's upstream side. Catch :class:`FTPError` for everything;
:class:`ReplyError` (and its 4xx/5xx children) when the server refused something and you
want its code and text; the others when the network is to blame. The client's CLI maps
each class to an exit code (see ``docs/client.md``).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from natftp.proto.replies import Reply


class FTPError(Exception):
    """Base of every error the client raises."""


class ConnectionFailed(FTPError):
    """The control connection could not be opened (refused, unreachable, DNS)."""


class ConnectionLost(ConnectionFailed):
    """The server closed the control connection, or it broke, in the middle of a session."""


class TimeoutError(FTPError, builtins.TimeoutError):  # noqa: A001 - the name users expect
    """Nothing arrived within the timeout (reply, data, or connection)."""


FTPTimeout = TimeoutError


class ProtocolError(FTPError):
    """The server sent something that is not FTP (a malformed reply or address)."""


class TLSError(ConnectionFailed):
    """The TLS handshake failed, the certificate did not verify, a pin did not match, or
    the server refused AUTH TLS (then ``reply`` is its answer). Raised before any login
    is sent, so no credentials went out in the clear."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class CertificateError(TLSError):
    """The server's certificate did not verify (self-signed, unknown CA, wrong name,
    expired). ``reason`` is OpenSSL's verdict, e.g. ``self-signed certificate``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotTLSError(TLSError):
    """TLS from the first byte (implicit, ``ftps://``) met a server that answered in plain
    text (OpenSSL: ``WRONG_VERSION_NUMBER``): the port speaks plain FTP, or explicit TLS,
    which starts with AUTH TLS (``ftpes://``)."""


class DialError(FTPError):
    """A TCP connection (data, or a probe) could not be made. ``status`` is ``refused``,
    ``timeout``, ``unreachable`` or ``error``; ``detail`` says it in words."""

    def __init__(self, host: str, port: int, status: str, detail: str) -> None:
        self.host, self.port, self.status, self.detail = host, port, status, detail
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(f"{where}: {status} ({detail})")


class ReplyError(FTPError):
    """The server answered a command with a refusal; ``code`` and ``text`` say what."""

    def __init__(self, reply: Reply, command: str = "") -> None:
        self.reply = reply
        self.code = reply.code
        self.text = reply.text
        self.command = command
        where = f" to {command}" if command else ""
        super().__init__(f"{reply.code} {reply.text}".strip() + f" (reply{where})")


class TransientError(ReplyError):
    """A 4xx reply: the command may succeed if tried again later."""


class PermanentError(ReplyError):
    """A 5xx reply: the command will not succeed as given (missing file, no permission)."""


class LoginError(PermanentError):
    """The server refused the user name or password."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One data-connection strategy that was tried, and why it did not work."""

    strategy: str
    reason: str

    def __str__(self) -> str:
        return f"{self.strategy}: {self.reason}"


class DataConnectionError(FTPError):
    """No data connection could be made with any allowed strategy (or one broke)."""

    def __init__(self, message: str, attempts: list[Attempt] | None = None) -> None:
        self.attempts = list(attempts or [])
        detail = "; ".join(str(a) for a in self.attempts)
        super().__init__(f"{message}" + (f" [{detail}]" if detail else ""))


def reply_error(reply: Reply, command: str = "") -> ReplyError:
    """The right ReplyError subclass for a refusal."""
    if reply.kind == 4:
        return TransientError(reply, command)
    if reply.kind == 5:
        return PermanentError(reply, command)
    return ReplyError(reply, command)


__all__ = [
    "Attempt", "CertificateError", "ConnectionFailed", "ConnectionLost",
    "DataConnectionError", "DialError", "FTPError", "FTPTimeout", "LoginError",
    "NotTLSError", "PermanentError", "ProtocolError", "ReplyError", "TLSError",
    "TimeoutError", "TransientError", "reply_error",
]
