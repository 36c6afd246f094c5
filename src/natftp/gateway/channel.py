"""One data connection through the gateway: a client end and an upstream end, each
either accepted on a gateway listener or dialled by the gateway, then relayed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from natftp.ftpio.data import ActiveListener, dial, streams
from natftp.ftpio.errors import DialError
from natftp.gateway.relay import HAVE_SPLICE, RelayStats, splice_relay, stream_relay

log = logging.getLogger("natftp.gateway")

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class DataError(Exception):
    """The data connection could not be set up; the text says why."""


@dataclass
class Listen:
    """The far side connects to ``listener``; only ``allowed`` (an IP) may."""

    listener: ActiveListener
    allowed: str
    what: str  # "client" / "upstream", for messages
    #: gives the port back to the pool it came from (called once, on close)
    release: Callable[[], None] | None = None

    def close(self) -> None:
        self.listener.close()
        if self.release is not None:
            release, self.release = self.release, None
            release()


@dataclass
class Dial:
    """The gateway connects to ``host:port``."""

    host: str
    port: int
    what: str


async def _accept(end: Listen, timeout: float) -> socket.socket:
    try:
        conn, _ = await end.listener.accept(timeout, end.allowed, end.what)
    except TimeoutError:
        raise DataError(f"the {end.what} did not open the data connection within "
                        f"{timeout:g} s") from None
    return conn


async def _dial(end: Dial, timeout: float) -> socket.socket:
    try:
        return await dial(end.host, end.port, timeout)
    except DialError as e:
        raise DataError(f"cannot connect to the {end.what} at {end.host} port {end.port}: "
                        f"{e.status} ({e.detail})") from None


async def _streams(sock: socket.socket, ctx: ssl.SSLContext | None, server_side: bool,
                   hostname: str | None, timeout: float) -> Streams:
    loop = asyncio.get_running_loop()
    if ctx is None or not server_side:
        return await streams(sock, tls=ctx, server_hostname=hostname, timeout=timeout)
    reader = asyncio.StreamReader(limit=1 << 16)
    proto = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(
        lambda: proto, sock=sock, ssl=ctx, ssl_handshake_timeout=timeout)
    return reader, asyncio.StreamWriter(transport, proto, reader, loop)


class DataChannel:
    """Set up by PASV/EPSV/PORT/EPRT; used by the next transfer command."""

    def __init__(self, client: Listen | Dial, upstream: Listen | Dial, *,
                 client_tls: ssl.SSLContext | None, upstream_tls: ssl.SSLContext | None,
                 upstream_hostname: str, timeout: float, idle: float, zero_copy: bool,
                 label: str) -> None:
        self.client, self.upstream = client, upstream
        self.client_tls, self.upstream_tls = client_tls, upstream_tls
        self.upstream_hostname = upstream_hostname
        self.timeout, self.idle, self.zero_copy = timeout, idle, zero_copy
        self.label = label  # e.g. "client passive / upstream passive"
        self.command = ""
        self.stats = RelayStats()
        self.error: str | None = None
        self.delivered = asyncio.Event()
        self._go = asyncio.Event()  # the transfer command was sent: dial the client now
        self._task = asyncio.ensure_future(self._run())
        self._socks: list[socket.socket] = []

    def transfer(self, command: str) -> None:
        """The transfer command went upstream (an active-mode client may be dialled now)."""
        self.command = command
        self._go.set()

    @property
    def connected(self) -> bool:
        return self.stats.method != ""

    async def wait_delivered(self) -> None:
        """Until the data has gone through (or the channel failed)."""
        waiter = asyncio.ensure_future(self.delivered.wait())
        try:
            await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    def abort(self) -> None:
        if not self._task.done():
            self._task.cancel()

    async def finish(self) -> None:
        """Let a delivered relay wind down (bounded by its grace time); abort otherwise."""
        if not self.delivered.is_set():
            self.abort()
        with contextlib.suppress(BaseException):
            await self._task

    async def _end(self, end: Listen | Dial) -> socket.socket:
        if isinstance(end, Listen):
            try:
                return await _accept(end, self.timeout)
            finally:
                end.close()
        if end.what == "client":
            await asyncio.wait_for(self._go.wait(), self.timeout * 4)
        return await _dial(end, self.timeout)

    async def _run(self) -> None:
        ends = [asyncio.ensure_future(self._end(self.client)),
                asyncio.ensure_future(self._end(self.upstream))]
        try:
            try:
                csock, usock = await asyncio.gather(*ends)
            except BaseException:
                for t in ends:
                    t.cancel()
                for t in ends:
                    with contextlib.suppress(BaseException):
                        s = await t
                        s.close()
                raise
            self._socks = [csock, usock]
            for s in self._socks:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats = RelayStats()
            if (HAVE_SPLICE and self.zero_copy and self.client_tls is None
                    and self.upstream_tls is None):
                await splice_relay(usock, csock, idle=self.idle, delivered=self.delivered,
                                   stats=self.stats)
            else:
                self.stats.method = "copy"
                cs = await _streams(csock, self.client_tls, True, None, self.timeout)
                us = await _streams(usock, self.upstream_tls, False, self.upstream_hostname,
                                    self.timeout)
                try:
                    await stream_relay(us, cs, idle=self.idle, delivered=self.delivered,
                                       stats=self.stats)
                finally:
                    for _, w in (cs, us):
                        w.close()
        except asyncio.CancelledError:
            self.error = self.error or "aborted"
            raise
        except (DataError, OSError, ssl.SSLError, TimeoutError) as e:
            self.error = str(e) or type(e).__name__
            log.info("data connection failed (%s): %s", self.label, self.error)
        finally:
            for s in self._socks:
                s.close()
            for end in (self.client, self.upstream):
                if isinstance(end, Listen):
                    end.close()
