"""Data connections from the client side: dialling a passive target, listening for an
active one, and TLS on either.

These work on plain sockets (the gateway splices them kernel to kernel) and wrap them in
asyncio streams only when asked (:func:`streams`). Where to dial is
:func:`natftp.proto.addr.passive_target`'s decision, made by the caller from the reply.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import logging
import socket
import ssl
from dataclasses import dataclass

from natftp.ftpio.errors import DataConnectionError, DialError, TimeoutError, TLSError
from natftp.proto.addr import IPAddress, ip
from natftp.proto.hostport import format_hostport

log = logging.getLogger("natftp.ftpio")

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def classify_connect_error(e: BaseException) -> tuple[str, str]:
    """A failed connect as (status, detail): ``refused`` (RST or ICMP port unreachable:
    nothing listens, or a firewall rejects), ``timeout`` (dropped), ``unreachable``,
    or ``error``. The doctor reasons from these; the client reports them."""
    if isinstance(e, (builtins.TimeoutError, asyncio.TimeoutError)):
        return "timeout", "no answer (packets dropped)"
    if isinstance(e, ConnectionRefusedError):
        return "refused", "connection refused (RST or ICMP port unreachable)"
    if isinstance(e, OSError):
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
            return "unreachable", e.strerror or str(e)
        if e.errno == errno.ECONNREFUSED:
            return "refused", "connection refused"
        if e.errno == errno.ETIMEDOUT:
            return "timeout", "connect timed out"
        return "error", e.strerror or str(e)
    return "error", str(e)


async def dial(host: str | IPAddress, port: int, timeout: float) -> socket.socket:
    """A connected non-blocking TCP socket to ``host:port``; raises :class:`DialError`."""
    h = str(host)
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(s, (h, port)), timeout)
    except (builtins.TimeoutError, OSError) as e:
        s.close()
        status, detail = classify_connect_error(e)
        if status == "timeout":
            detail = f"no connection within {timeout:g} s"
        raise DialError(h, port, status, detail) from None
    except BaseException:
        s.close()
        raise
    return s


@dataclass(frozen=True, slots=True)
class Probe:
    """What happened when we opened (and closed) a TCP connection."""

    status: str  # ok, refused, timeout, unreachable, error
    host: str
    port: int
    detail: str = ""
    local: tuple[str, int] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail and self.status != "ok" else ""
        return f"{format_hostport(self.host, self.port)}: {self.status}{extra}"


async def probe(host: str, port: int, timeout: float) -> Probe:
    """Open and close a TCP connection; report how it went (never raises)."""
    try:
        s = await dial(host, port, timeout)
    except DialError as e:
        return Probe(e.status, host, port, e.detail)
    local = s.getsockname()
    s.close()
    return Probe("ok", host, port, local=(str(local[0]), int(local[1])))


class ActiveListener:
    """The client's end of an active-mode (PORT/EPRT) data connection: a listening socket
    that accepts only the server it expects (anyone else is a data-connection thief)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port = int(sock.getsockname()[1])

    @classmethod
    def open(cls, bind: str | IPAddress, port: int = 0) -> ActiveListener:
        """Listen on ``bind`` (the control connection's local address) and ``port``."""
        h = str(bind)
        s = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((h, port))
            s.listen(1)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        return cls(s)

    async def accept(self, timeout: float, allowed: str | IPAddress | None = None,
                     what: str = "server") -> tuple[socket.socket, tuple[str, int]]:
        """The first connection from ``allowed`` (any peer when None) within ``timeout``;
        raises :class:`builtins.TimeoutError`. Others are closed and logged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        want = ip(allowed) if allowed is not None else None
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise builtins.TimeoutError(f"no connection from the {what} within "
                                            f"{timeout:g} s")
            conn, peer = await asyncio.wait_for(loop.sock_accept(self.sock), left)
            if want is None or ip(peer[0]) == want:
                conn.setblocking(False)
                return conn, (str(peer[0]), int(peer[1]))
            log.warning("refused a data connection from %s to port %d (expected the %s, "
                        "%s)", peer[0], self.port, what, want)
            conn.close()

    def close(self) -> None:
        self.sock.close()


async def streams(sock: socket.socket, *, tls: ssl.SSLContext | None = None,
                  server_hostname: str | None = None, timeout: float = 30.0,
                  limit: int = 1 << 16) -> Streams:
    """Asyncio streams over a connected data socket; with ``tls`` we are the TLS client
    (on a data connection the FTP client is, whoever connected)."""
    kw: dict[str, object] = {}
    if tls is not None:
        kw = {"ssl": tls, "server_hostname": server_hostname or "",
              "ssl_handshake_timeout": timeout}
    return await asyncio.wait_for(
        asyncio.open_connection(sock=sock, limit=limit, **kw),  # type: ignore[arg-type]
        timeout + 1)


async def read_all(reader: asyncio.StreamReader, timeout: float, limit: int = 1 << 20,
                   ) -> bytes:
    """Read a data connection to its end, bounded in size and time (``TimeoutError``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    out = bytearray()
    while len(out) < limit:
        left = deadline - loop.time()
        if left <= 0:
            raise builtins.TimeoutError(f"data connection not finished within {timeout:g} s")
        chunk = await asyncio.wait_for(reader.read(65536), left)
        if not chunk:
            break
        out += chunk
    return bytes(out)


async def close_writer(w: asyncio.StreamWriter, timeout: float = 1.0) -> None:
    """Close a stream and wait (briefly) for the close to go out; never raises."""
    with contextlib.suppress(Exception):
        w.close()
        await asyncio.wait_for(w.wait_closed(), timeout)


async def start_tls(writer: asyncio.StreamWriter, tls: ssl.SSLContext, *,
                    server_hostname: str | None, timeout: float) -> ssl.SSLObject | None:
    """TLS on a data connection that is already open, as its client. Called after the
    transfer command's 1xx: servers (vsftpd) start their side only then, so a handshake
    begun earlier would wait for them while they wait for the command. Returns the TLS
    object (``session_reused`` says whether the control session was resumed)."""
    try:
        await asyncio.wait_for(writer.start_tls(tls, server_hostname=server_hostname,
                                                ssl_handshake_timeout=timeout), timeout + 1)
    except ssl.SSLError as e:
        raise TLSError(f"TLS on the data connection failed: {e.reason or e}") from e
    except builtins.TimeoutError as e:
        raise TimeoutError("TLS handshake on the data connection did not finish within "
                           f"{timeout:g} s") from e
    except OSError as e:
        raise DataConnectionError(f"data connection broke during TLS: {e}") from e
    obj = writer.get_extra_info("ssl_object")
    return obj if isinstance(obj, ssl.SSLObject) else None
