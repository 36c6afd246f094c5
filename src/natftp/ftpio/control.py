"""The client side of an FTP control connection: one implementation for the client, the
doctor and the gateway's upstream side.

:class:`Control` moves commands and replies (parsed by :mod:`natftp.proto`) over a TCP or
TLS stream: every wait has a deadline, every line can go to a ``trace`` hook (the client's
``-v``, the doctor's evidence), and the dialogues every part needs are here once: the
greeting, AUTH TLS (with the certificate check and pin *before* anything else is sent, so
a failed TLS start never leaks USER/PASS), the login, PBSZ/PROT, and the TLS context with
the control connection's session for data connections.

Errors are :mod:`natftp.ftpio.errors`: :class:`ConnectionLost` when the server closes or
the connection breaks, :class:`TimeoutError` when a reply does not come in time,
:class:`ProtocolError` for a malformed reply, :class:`TLSError` for anything TLS.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

from natftp.ftpio.errors import (
    CertificateError,
    ConnectionFailed,
    ConnectionLost,
    FTPError,
    LoginError,
    NotTLSError,
    ProtocolError,
    TimeoutError,
    TLSError,
    reply_error,
)
from natftp.ftpio.tls import check_pin, make_context
from natftp.proto.addr import IPAddress, ip
from natftp.proto.commands import Command
from natftp.proto.hostport import format_hostport
from natftp.proto.replies import Reply, ReplyParser
from natftp.proto.replies import ReplyError as ReplySyntaxError
from natftp.tls import ReuseContext

#: ``trace(direction, text)``: ``">"`` a command sent (passwords masked), ``"<"`` one reply
#: line received, ``"*"`` a note about what the connection does
Trace = Callable[[str, str], None]

#: "use the channel's own timeout" (``None`` means: no deadline)
DEFAULT: Any = object()


class Control:
    """One control connection, already open. Use :meth:`connect` to make one.

    ``timeout`` bounds every exchange (``None``: wait as long as it takes, for the
    gateway, whose reply pump waits on a server that may be transferring for hours).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 host: str, timeout: float | None = 30.0, trace: Trace | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.reader, self.writer = reader, writer
        self.host = host
        self.timeout = timeout
        self.trace = trace
        #: the context TLS was started with (implicit or AUTH TLS); None while in the clear
        self.tls_context = tls
        self._parser = ReplyParser()
        self._replies: deque[Reply] = deque()
        self._closed = False
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        self.peer: tuple[str, int] = (str(peer[0]), int(peer[1]))
        self.local: tuple[str, int] = (str(local[0]), int(local[1]))

    @classmethod
    async def connect(cls, host: str, port: int, *, timeout: float | None = 30.0,
                      connect_timeout: float = 10.0, implicit_tls: ssl.SSLContext | None = None,
                      fingerprint: str | None = None, trace: Trace | None = None,
                      limit: int = 1 << 16) -> Control:
        """Open a control connection (with TLS from the first byte when ``implicit_tls``);
        the greeting is not read yet (:meth:`greet`)."""
        hp = format_hostport(host, port)
        if trace is not None:
            trace("*", f"Connecting to {host} port {port}")
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=implicit_tls, limit=limit,
                                        server_hostname=host if implicit_tls else None),
                connect_timeout)
        except builtins.TimeoutError as e:
            raise TimeoutError(f"no connection to {hp} within "
                               f"{connect_timeout:g} s") from e
        except ssl.SSLError as e:
            if _not_tls(e):
                raise NotTLSError(
                    f"TLS with {hp} failed ({_tls_reason(e)}): the server answered in "
                    "plain text, so this port speaks plain FTP or explicit TLS, not "
                    f"implicit TLS: use ftpes://{hp}/ (TLS after AUTH TLS)") from e
            raise _tls_error(f"TLS with {hp} failed", e) from e
        except ConnectionRefusedError as e:
            raise ConnectionFailed(f"nothing listens on {hp} (connection refused): is "
                                   "the server running, on this address and port?") from e
        except OSError as e:
            raise ConnectionFailed(f"could not connect to {hp}: {e.strerror or e}") from e
        c = cls(reader, writer, host=host, timeout=timeout, trace=trace, tls=implicit_tls)
        c.note(f"Connected to {host} ({c.peer[0]}) port {c.peer[1]}")
        if implicit_tls is not None and fingerprint:
            try:
                check_pin(c.ssl_object, fingerprint)
            except TLSError:
                c.abort()
                raise
        return c

    # -- what the connection is ---------------------------------------------------------

    @property
    def peer_ip(self) -> IPAddress:
        """The server's address (an IPv4-mapped one unwrapped)."""
        return ip(self.peer[0])

    @property
    def local_ip(self) -> IPAddress:
        return ip(self.local[0])

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self.writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    @property
    def connected(self) -> bool:
        return not self._closed

    @property
    def pending(self) -> bool:
        """True while a reply is partly received (a close now cuts it off)."""
        return self._parser.pending

    # -- lines ----------------------------------------------------------------------------

    def note(self, text: str) -> None:
        if self.trace is not None:
            self.trace("*", text)

    def _limit(self, timeout: Any) -> float | None:
        return self.timeout if timeout is DEFAULT else timeout

    async def send(self, name: str | Command, arg: str = "") -> None:
        """Send one command (a CR or LF in it is refused by :class:`Command`)."""
        cmd = name if isinstance(name, Command) else Command(name, arg)
        if self._closed:
            raise ConnectionLost("not connected")
        if self.trace is not None:
            self.trace(">", cmd.masked())
        try:
            self.writer.write(cmd.format())
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except builtins.TimeoutError as e:
            raise TimeoutError(f"could not send {cmd.name} within {self.timeout:g} s") from e
        except (OSError, ssl.SSLError) as e:
            self.abort()
            raise ConnectionLost(f"control connection broke while sending {cmd.name}: "
                                 f"{e}") from e

    async def reply(self, timeout: Any = DEFAULT) -> Reply:
        """The next complete reply, a preliminary 1xx included; ``timeout`` is a deadline
        for the whole reply (multi-line ones too)."""
        limit = self._limit(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if limit is None else loop.time() + limit
        while not self._replies:
            if self._closed:
                raise ConnectionLost("not connected")
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise TimeoutError(f"no reply from the server within {limit:g} s")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except builtins.TimeoutError as e:
                raise TimeoutError(f"no reply from the server within {limit:g} s") from e
            except (OSError, ssl.SSLError) as e:
                self.abort()
                raise ConnectionLost(f"control connection broke: {e}") from e
            if not data:
                cut = " in the middle of a reply" if self._parser.pending else ""
                self.abort()
                raise ConnectionLost(f"the server closed the control connection{cut}")
            try:
                self._replies.extend(self._parser.feed(data))
            except ReplySyntaxError as e:
                self.abort()
                raise ProtocolError(f"malformed reply: {e}") from e
        r = self._replies.popleft()
        if self.trace is not None:
            for i, line in enumerate(r.lines):
                self.trace("<", f"{r.code}{' ' if i == len(r.lines) - 1 else '-'}{line}")
        return r

    async def final(self, timeout: Any = DEFAULT) -> Reply:
        """The next reply that is not preliminary (1xx are skipped)."""
        r = await self.reply(timeout)
        while r.kind == 1:
            r = await self.reply(timeout)
        return r

    async def cmd(self, name: str, arg: str = "", timeout: Any = DEFAULT) -> Reply:
        """Send a command and return its final reply, whatever its code."""
        await self.send(name, arg)
        return await self.final(timeout)

    async def command(self, name: str, arg: str = "", timeout: Any = DEFAULT) -> Reply:
        """Like :meth:`cmd`, but a 4xx/5xx reply raises TransientError/PermanentError."""
        r = await self.cmd(name, arg, timeout)
        if r.kind >= 4:
            raise reply_error(r, name)
        return r

    # -- dialogues ------------------------------------------------------------------------

    async def greet(self, timeout: Any = DEFAULT) -> Reply:
        """Read the greeting, waiting through ``120 service ready in n minutes``; returns
        it whatever its code (a 421 "too many users" is the caller's to report)."""
        r = await self.reply(timeout)
        while r.code == 120 or r.kind == 1:
            r = await self.reply(timeout)
        return r

    async def auth_tls(self, context: ssl.SSLContext, *, server_hostname: str | None,
                       timeout: float = 10.0, fingerprint: str | None = None) -> None:
        """AUTH TLS and the handshake; raises :class:`TLSError` (``reply`` set when the
        server refused AUTH) before anything else is sent."""
        r = await self.cmd("AUTH", "TLS")
        if r.code != 234:
            raise TLSError(f"the server refused AUTH TLS: {r.code} {r.text}", r)
        await self.start_tls(context, server_hostname=server_hostname, timeout=timeout)
        if fingerprint:
            check_pin(self.ssl_object, fingerprint)
        self.note("TLS established on the control connection")

    async def start_tls(self, context: ssl.SSLContext, *, server_hostname: str | None,
                        timeout: float = 10.0) -> None:
        """The TLS handshake on this connection (after a 234)."""
        try:
            await asyncio.wait_for(
                self.writer.start_tls(context, server_hostname=server_hostname,
                                      ssl_handshake_timeout=timeout), timeout + 1)
        except ssl.SSLError as e:
            self.abort()
            raise _tls_error(f"TLS handshake with {self.host} failed", e) from e
        except builtins.TimeoutError as e:
            self.abort()
            raise TimeoutError(f"TLS handshake with {self.host} did not finish within "
                               f"{timeout:g} s") from e
        except (OSError, ConnectionError) as e:
            self.abort()
            raise ConnectionLost(f"control connection broke during the TLS handshake: "
                                 f"{e}") from e
        self.tls_context = context

    async def login(self, user: str, password: str, *, pass_timeout: Any = DEFAULT,
                    ) -> Reply:
        """USER, then PASS when asked; returns the 230/202. A refusal raises
        :class:`LoginError` (5xx) or :class:`TransientError` (4xx: try later).
        ``pass_timeout``: servers delay a refused PASS (pyftpdlib 3 s, vsftpd 1 s)."""
        r = await self.cmd("USER", user)
        if r.code in (331, 332):
            r = await self.cmd("PASS", password, pass_timeout)
        if r.code == 332:
            raise LoginError(r, "ACCT (accounts are not supported)")
        if r.kind == 4:
            raise reply_error(r, "PASS")
        if r.code not in (230, 202):
            raise LoginError(r, "login")
        return r

    async def protect(self) -> None:
        """PBSZ 0 and PROT P: data connections are TLS from now on."""
        await self.command("PBSZ", "0")
        await self.command("PROT", "P")

    def data_tls(self, *, reuse: bool = True) -> ssl.SSLContext | None:
        """The context for a protected data connection: this connection's own, resuming
        its TLS session when ``reuse`` (vsftpd and ProFTPD insist by default). None
        while the control connection is in the clear."""
        ctx = self.tls_context
        if ctx is None:
            return None
        if isinstance(ctx, ReuseContext):
            obj = self.ssl_object
            ctx.reuse_session = obj.session if (reuse and obj is not None) else None
        return ctx

    # -- the end --------------------------------------------------------------------------

    async def quit(self, timeout: float = 2.0) -> None:
        """QUIT, a short wait for its reply, close. Never raises (after a failure the
        connection may already be gone)."""
        if not self._closed:
            with contextlib.suppress(Exception):
                await self.send("QUIT")
                await self.reply(min(timeout, self.timeout or timeout))
        await self.close()

    async def close(self) -> None:
        """Close and wait briefly for the close to complete."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 1)

    def abort(self) -> None:
        """Drop the connection at once, without QUIT (the dialogue is out of step, or a
        transfer hung)."""
        self._closed = True
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


def _tls_reason(e: ssl.SSLError) -> str:
    """An SSL error in words."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return str(e.verify_message or e)
    return str(e.reason or e)


def _tls_error(what: str, e: ssl.SSLError) -> TLSError:
    """The error for a failed handshake: :class:`CertificateError` when the certificate
    did not verify (its users say how to trust it), else :class:`TLSError`."""
    if isinstance(e, ssl.SSLCertVerificationError):
        reason = _tls_reason(e)
        return CertificateError(f"{what}: the server's certificate is not trusted here "
                                f"({reason})", reason)
    return TLSError(f"{what}: {_tls_reason(e)}")


def _not_tls(e: ssl.SSLError) -> bool:
    """OpenSSL's ways of saying the peer's first bytes were not a TLS record (a plain
    ``220 ...`` greeting read as one)."""
    text = f"{e.reason} {e}".upper()
    return any(w in text for w in ("WRONG_VERSION_NUMBER", "WRONG VERSION NUMBER",
                                   "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"))


async def presented_certificate(host: str, port: int, *, implicit: bool,
                                timeout: float = 10.0) -> bytes | None:
    """The certificate (DER) the server presents, read without verifying it and without
    logging in: for the message that tells a user which fingerprint to pin after a
    verification failure. None when TLS does not start."""
    ctx = make_context(verify=False)
    try:
        c = await Control.connect(host, port, timeout=timeout, connect_timeout=timeout,
                                  implicit_tls=ctx if implicit else None)
    except FTPError:
        return None
    try:
        if not implicit:
            await c.greet()
            if (await c.cmd("AUTH", "TLS")).code != 234:
                return None
            await c.start_tls(ctx, server_hostname=None, timeout=timeout)
        obj = c.ssl_object
        return obj.getpeercert(binary_form=True) if obj is not None else None
    except FTPError:
        return None
    finally:
        c.abort()
