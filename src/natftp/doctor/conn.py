"""A small async FTP control connection for the doctor, on top of ``natftp.proto``.

The doctor needs raw control of the dialogue (it sends PASV twice, PORT to a listener
of its own, AUTH TLS on one session and not on the next), so it does not use the client
library. Everything here has a timeout; every exchange is recorded as evidence.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from natftp.proto.commands import Command
from natftp.proto.replies import Reply, ReplyParser


class FtpTimeout(Exception):
    """No (complete) reply within the timeout."""


class FtpClosed(Exception):
    """The server closed the control connection."""


@dataclass(frozen=True, slots=True)
class ConnectOutcome:
    """What happened when we opened a TCP connection: ok, refused, timeout, unreachable."""

    status: str
    host: str
    port: int
    detail: str = ""
    local: tuple[str, int] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __str__(self) -> str:
        extra = f" ({self.detail})" if self.detail and self.status != "ok" else ""
        return f"{_hostport(self.host, self.port)}: {self.status}{extra}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def classify_oserror(e: BaseException) -> tuple[str, str]:
    """Map a connect error to (status, detail)."""
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
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


async def tcp_probe(host: str, port: int, timeout: float) -> ConnectOutcome:
    """Open and close a TCP connection; report how it went."""
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as e:
        status, detail = classify_oserror(e)
        return ConnectOutcome(status, host, port, detail)
    local = w.get_extra_info("sockname")
    w.close()
    try:
        await asyncio.wait_for(w.wait_closed(), 1)
    except (TimeoutError, OSError):
        pass
    return ConnectOutcome("ok", host, port, local=(local[0], local[1]) if local else None)


class _SessionContext(ssl.SSLContext):
    """An SSLContext whose wrap_bio reuses a given TLS session (asyncio has no
    ``session=`` parameter; FTPS servers such as vsftpd insist on reuse by default)."""

    reuse: ssl.SSLSession | None = None

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        if self.reuse is not None:
            kwargs["session"] = self.reuse
        return super().wrap_bio(*args, **kwargs)


def make_tls_context(reuse: ssl.SSLSession | None = None) -> _SessionContext:
    """A permissive context: the doctor inspects the certificate itself and reports."""
    ctx = _SessionContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.reuse = reuse
    return ctx


@dataclass
class Control:
    """One control connection. ``transcript`` holds every line sent and received."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    timeout: float
    host: str
    port: int
    transcript: list[str] = field(default_factory=list)
    parser: ReplyParser = field(default_factory=ReplyParser)
    pending: list[Reply] = field(default_factory=list)
    tls: bool = False
    ctx: _SessionContext | None = None

    @classmethod
    async def open(cls, host: str, port: int, timeout: float,
                   implicit_tls: bool = False) -> Control:
        kw: dict[str, Any] = {}
        ctx = make_tls_context() if implicit_tls else None
        if ctx is not None:
            kw = {"ssl": ctx, "server_hostname": None}
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port, **kw), timeout)
        return cls(r, w, timeout, host, port, tls=implicit_tls, ctx=ctx)

    @property
    def peer(self) -> tuple[str, int]:
        p = self.writer.get_extra_info("peername")
        return str(p[0]), int(p[1])

    @property
    def local(self) -> tuple[str, int]:
        s = self.writer.get_extra_info("sockname")
        return str(s[0]), int(s[1])

    @property
    def family(self) -> int:
        sock: socket.socket = self.writer.get_extra_info("socket")
        return int(sock.family)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self.writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    async def reply(self, timeout: float | None = None) -> Reply:
        """The next complete reply (preliminary 1xx included)."""
        t = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + t
        while not self.pending:
            left = deadline - loop.time()
            if left <= 0:
                raise FtpTimeout(f"no reply within {t:g} s")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError as e:
                raise FtpTimeout(f"no reply within {t:g} s") from e
            except (ConnectionError, ssl.SSLError) as e:
                raise FtpClosed(f"control connection lost: {e}") from e
            if not data:
                raise FtpClosed("the server closed the control connection")
            self.pending.extend(self.parser.feed(data))
        r = self.pending.pop(0)
        self.transcript.append(f"<- {r}")
        return r

    async def send(self, name: str, arg: str = "") -> None:
        c = Command(name, arg)
        self.transcript.append(f"-> {c.masked()}")
        try:
            self.writer.write(c.format())
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except (TimeoutError, ConnectionError) as e:
            raise FtpClosed(f"cannot send {name}: {e}") from e

    async def cmd(self, name: str, arg: str = "", timeout: float | None = None) -> Reply:
        """Send a command and return its final reply (skipping nothing: a 1xx is
        returned as is; use :meth:`reply` to read what follows it)."""
        await self.send(name, arg)
        return await self.reply(timeout)

    async def start_tls(self, server_hostname: str | None) -> None:
        ctx = make_tls_context()
        await asyncio.wait_for(
            self.writer.start_tls(ctx, server_hostname=server_hostname), self.timeout)
        self.tls = True
        self.ctx = ctx

    def data_tls_context(self, reuse: bool) -> ssl.SSLContext | None:
        """The context for a protected data connection: the control connection's own
        (a TLS session can only be resumed from the context that made it)."""
        if not self.tls or self.ctx is None:
            return None
        obj = self.ssl_object
        self.ctx.reuse = obj.session if (reuse and obj is not None) else None
        return self.ctx

    async def close(self) -> None:
        try:
            if not self.writer.is_closing():
                try:
                    await self.send("QUIT")
                    await self.reply(min(self.timeout, 1.0))
                except (FtpClosed, FtpTimeout, OSError):
                    pass
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 1)
        except (TimeoutError, OSError, ssl.SSLError):
            pass

    def abort(self) -> None:
        """Drop the connection without QUIT (after a hung data transfer)."""
        transport = self.writer.transport
        transport.abort()


async def open_data(host: str, port: int, timeout: float,
                    tls: ssl.SSLContext | None = None,
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    kw: dict[str, Any] = {}
    if tls is not None:
        kw = {"ssl": tls, "server_hostname": None, "ssl_handshake_timeout": timeout}
    return await asyncio.wait_for(asyncio.open_connection(host, port, **kw), timeout)


async def wrap_accepted(sock: socket.socket, timeout: float, tls: ssl.SSLContext | None,
                        ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over a socket we accepted (active mode), where we are still the TLS
    client of the data connection."""
    kw: dict[str, Any] = {}
    if tls is not None:
        kw = {"ssl": tls, "server_hostname": "", "ssl_handshake_timeout": timeout}
    return await asyncio.wait_for(asyncio.open_connection(sock=sock, **kw), timeout)


async def read_all(reader: asyncio.StreamReader, timeout: float, limit: int = 1 << 20) -> bytes:
    """Read a data connection to EOF (bounded in size and time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    out = bytearray()
    while len(out) < limit:
        left = deadline - loop.time()
        if left <= 0:
            raise FtpTimeout(f"data connection not finished within {timeout:g} s")
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError as e:
            raise FtpTimeout(f"data connection not finished within {timeout:g} s") from e
        if not chunk:
            break
        out += chunk
    return bytes(out)


async def close_writer(w: asyncio.StreamWriter) -> None:
    try:
        w.close()
        await asyncio.wait_for(w.wait_closed(), 1)
    except (TimeoutError, OSError, ssl.SSLError):
        pass
