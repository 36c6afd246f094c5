"""Data connections and the bytes that move over them.

Everything here works on plain non-blocking sockets driven by the event loop, because
that is what both asyncio and uvloop support fully: uvloop 0.23 raises
``NotImplementedError`` for ``loop.sendfile``/``loop.sock_sendfile``, so RETR calls
``os.sendfile`` itself and waits for writability with ``loop.add_writer`` when the socket
buffer is full. STOR receives with ``sock_recv_into`` into one large reused buffer.

In ``PROT P`` a data connection is TLS (:class:`TLSChannel`), with the control session's
own context (so a client can resume that session), OpenSSL on the socket itself: RETR
encrypts the file from one reused buffer of up to 1 MiB (no sendfile: this kernel has no
kTLS, ``TCP_ULP "tls"`` gives ENOENT), STOR decrypts into the same 1 MiB buffer as in the
clear. Transfer bodies see a channel
(:class:`PlainChannel` or :class:`TLSChannel`) and do not care which.

A passive listener is callback-driven (``add_reader`` plus one timer), not a task: a
session holding a PASV port costs a socket and a timer handle, nothing more. Once its
data connection came, the listening socket stays open (its port held) as the session's
*spare* and is offered again at the session's next PASV/EPSV, after closing anything that
connected to it in between: a session looping EPSV + RETR binds one socket, not one per
transfer. Spares go back to the pool when their session ends, and the oldest is taken back
when the pool has no free port left, so they never cause a "no free passive port".

Every passive socket is watched from the moment it is bound until it is closed (issue
21): a connection is accepted as soon as it arrives, the control peer's kept for the
transfer and any other closed at once, so connections from elsewhere cannot fill the
accept queue and keep the client out. Once the listener's connection came, its watcher
closes whatever else comes, also while the socket is kept as a spare; a listener made on
a spare takes the watch over (the reader is replaced, not removed and added again: ~0.5
us under uvloop).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable

from natftp.nat.ports import PortPool
from natftp.proto import proxy
from natftp.proto.addr import IPAddress, ip
from natftp.proto.ascii import FromWire, ToWire
from natftp.server.config import ProxyProtocolConfig
from natftp.server.guard import THROTTLE
from natftp.server.stats import Stats

log = logging.getLogger("natftp.server")

RECV_BUFFER = 1 << 20
SENDFILE_CHUNK = 1 << 30
ASCII_CHUNK = 1 << 18
#: yield to other sessions at least this often while one transfer keeps succeeding
YIELD_EVERY = 64 << 20
#: RETR over TLS: bytes read from the file and handed to the TLS transport at once
TLS_CHUNK = 1 << 20
#: how long a closing TLS data connection waits for the client's close_notify or FIN
TLS_CLOSE_WAIT = 5.0


class DataError(Exception):
    """A data connection that could not be made, or a transfer refused once under way;
    ``str(e)`` is fit for a 425 reply, or for ``code`` with ``reply_text`` when the
    refusal has its own wording."""

    def __init__(self, text: str, code: int = 425, reply_text: str | None = None) -> None:
        super().__init__(text)
        self.code = code
        self.reply_text = reply_text


class Progress:
    """Bytes moved so far; a watchdog compares snapshots to detect a stalled transfer."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_writer(fd)


async def wait_readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


class PlainChannel:
    """A data connection in the clear: a non-blocking socket; RETR uses sendfile.

    ``on_wait``, when set, is called once, just before ``send_file`` first waits for the
    socket or yields: a transfer that never waits (a small file into an empty socket
    buffer) never calls it (the session holds its 150 until then, see
    ``Session.transfer``)."""

    __slots__ = ("loop", "sock", "on_wait")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.loop, self.sock = loop, sock
        self.on_wait: Callable[[], None] | None = None

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def recv_into(self, buf: bytearray) -> int:
        return await self.loop.sock_recv_into(self.sock, buf)

    def _waiting(self) -> None:
        cb, self.on_wait = self.on_wait, None
        if cb is not None:
            cb()

    async def send_file(self, fd: int, offset: int, progress: Progress,
                        end: int | None = None) -> int:
        """Zero-copy ``fd`` from ``offset`` to ``end`` (its size when opened, the size
        the 150 announced) or, without one, to its end (kernel sendfile)."""
        out = self.sock.fileno()
        sent = 0
        since_yield = 0
        while end is None or offset < end:
            try:
                n = os.sendfile(out, fd, offset, SENDFILE_CHUNK)
            except (BlockingIOError, InterruptedError):
                since_yield = 0
                self._waiting()
                await wait_writable(self.loop, out)
                continue
            if n == 0:
                return sent
            offset += n
            sent += n
            progress.bytes += n
            since_yield += n
            if since_yield >= YIELD_EVERY:
                since_yield = 0
                self._waiting()
                await asyncio.sleep(0)
        return sent

    async def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        self.sock.close()


class TLSChannel:
    """A ``PROT P`` data connection: TLS (server side, the control session's context)
    straight on the raw non-blocking socket (an ``SSLSocket``: OpenSSL reads and writes
    the socket itself), driven by the event loop's readiness callbacks.

    Not asyncio's SSL transport: under uvloop 0.23 it dropped the last ~64 KiB of an
    upload when the client sent close_notify and FIN right after the data (lftp), and
    here the end of a transfer (close_notify or a bare FIN) is explicit. Not memory BIOs
    either (as the control connection, which needs them for CCC): for RETR they cost a
    copy of every encrypted byte out of the BIO into a new ``bytes`` (a quarter of the
    core in a 1 GiB FTPS RETR, py-spy) before the copy into the socket.
    """

    __slots__ = ("loop", "sock", "reused", "version", "_eof", "_fd")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 ctx: ssl.SSLContext) -> None:
        self.loop = loop
        # wrap_socket takes the descriptor over (``sock`` is detached)
        self.sock: ssl.SSLSocket = ctx.wrap_socket(sock, server_side=True,
                                                   do_handshake_on_connect=False)
        self._fd = self.sock.fileno()
        self.reused = False
        self.version = "?"
        self._eof = False

    @classmethod
    async def accept(cls, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                     ctx: ssl.SSLContext, timeout: float) -> TLSChannel:
        try:
            chan = cls(loop, sock, ctx)
        except BaseException:
            sock.close()
            raise
        try:
            await asyncio.wait_for(chan._handshake(), timeout)
        except TimeoutError:
            chan.sock.close()
            raise DataError(f"the TLS handshake on the data connection did not finish "
                            f"within {timeout:g} s (timeouts.data); this connection is "
                            "PROT P: the client must start TLS on it") from None
        except BaseException as e:
            chan.sock.close()
            if not isinstance(e, (ssl.SSLError, OSError, EOFError)):
                raise
            why = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
            raise DataError(f"the TLS handshake on the data connection failed ({why}); "
                            "this connection is PROT P (send PROT C for clear data, if the "
                            "server allows it)") from None
        chan.reused = chan.sock.session_reused
        chan.version = chan.sock.version() or "?"
        return chan

    async def _handshake(self) -> None:
        while True:
            try:
                self.sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                await wait_readable(self.loop, self._fd)
            except ssl.SSLWantWriteError:
                await wait_writable(self.loop, self._fd)
            except ssl.SSLEOFError:
                raise EOFError("the client closed the data connection during the "
                               "TLS handshake") from None

    async def send(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view)
            except ssl.SSLWantWriteError:
                await wait_writable(self.loop, self._fd)
                continue
            except ssl.SSLWantReadError:  # a TLS 1.3 key update from the peer
                await wait_readable(self.loop, self._fd)
                continue
            view = view[n:]

    async def recv_into(self, buf: bytearray) -> int:
        """Up to len(buf) plaintext bytes; 0 at the end (close_notify, or FIN)."""
        view = memoryview(buf)
        n = 0
        while n < len(buf) and not self._eof:
            try:
                got = self.sock.recv_into(view[n:])
            except ssl.SSLWantReadError:
                if n:
                    break
                await wait_readable(self.loop, self._fd)
                continue
            except ssl.SSLWantWriteError:
                await wait_writable(self.loop, self._fd)
                continue
            except ssl.SSLZeroReturnError:
                got = 0
            if not got:  # close_notify, or a FIN without one: taken as the end
                self._eof = True
                break
            n += got
        return n

    async def send_file(self, fd: int, offset: int, progress: Progress,
                        end: int | None = None) -> int:
        """The file read into one buffer (as large as the file, at most ``TLS_CHUNK``)
        and encrypted from there."""
        buf = memoryview(bytearray(TLS_CHUNK if end is None else
                                   max(1, min(TLS_CHUNK, end - offset))))
        sent = 0
        while end is None or offset < end:
            n = os.preadv(fd, [buf if end is None else buf[:end - offset]], offset)
            if not n:
                return sent
            offset += n
            await self.send(buf[:n])
            sent += n
            progress.bytes += n
        return sent

    async def close(self) -> None:
        """close_notify and FIN, then a bounded wait for the client's side (ftplib waits
        for ours before it sends its own), then close."""
        try:
            try:
                self.sock.unwrap()  # sends close_notify; the client's is not awaited
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLError):
                pass
            self.sock.shutdown(socket.SHUT_WR)  # from here on a plain socket
            await asyncio.wait_for(self._drain_peer(), TLS_CLOSE_WAIT)
        except (TimeoutError, OSError, ValueError):
            pass
        finally:
            self.sock.close()

    async def _drain_peer(self) -> None:
        for _ in range(64):
            try:
                if not self.sock.recv(1 << 16):
                    return
            except BlockingIOError:
                await wait_readable(self.loop, self._fd)

    def abort(self) -> None:
        self.sock.close()


Channel = PlainChannel | TLSChannel


async def send_ascii(chan: Channel, fd: int, skip: int, progress: Progress,
                     what: str) -> int:
    """TYPE A download: the file through :class:`ToWire` (LF -> CR LF where no CR is),
    streamed in chunks. ``skip``: a REST offset, in wire octets (RFC 3659 §5.3), so the
    file is read from its start and the first ``skip`` octets of its wire form dropped;
    an offset past the end is refused (554) once that is known."""
    enc = ToWire(skip)
    offset = 0
    sent = 0
    while True:
        chunk = os.pread(fd, ASCII_CHUNK, offset)
        if not chunk:
            if enc.skipping:
                raise DataError("restart offset beyond the end", 554,
                                f"RETR refused: restart offset {skip} is beyond the end of "
                                f"{what} ({skip - enc.skipping} octets in TYPE A).")
            return sent
        offset += len(chunk)
        data = enc.feed(chunk)
        if not data:
            await asyncio.sleep(0)  # skipping to a REST offset: let other sessions run
            continue
        await chan.send(data)
        sent += len(data)
        progress.bytes += len(data)


async def send_bytes(chan: Channel, data: bytes, progress: Progress) -> int:
    await chan.send(data)
    progress.bytes += len(data)
    return len(data)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


async def recv_to_file(chan: Channel, fd: int, progress: Progress) -> int:
    """Binary upload: channel -> file until the client closes, one reused 1 MiB buffer."""
    buf = bytearray(RECV_BUFFER)
    view = memoryview(buf)
    got = 0
    while True:
        n = await chan.recv_into(buf)
        if n == 0:
            return got
        _write_all(fd, view[:n])
        got += n
        progress.bytes += n


async def recv_ascii_to_file(chan: Channel, fd: int, progress: Progress) -> int:
    """TYPE A upload: the received octets through :class:`FromWire` (CR LF -> LF)."""
    buf = bytearray(ASCII_CHUNK)
    dec = FromWire()
    got = 0
    while True:
        n = await chan.recv_into(buf)
        if n == 0:
            _write_all(fd, memoryview(dec.end()))
            return got
        got += n
        progress.bytes += n
        _write_all(fd, memoryview(dec.feed(bytes(buf[:n]))))


class Relay:
    """Data connections relayed by a trusted balancer (``[proxy_protocol]``, issue 18).

    A passive data connection that comes from a trusted balancer instead of the client
    may start with a PROXY header (a balancer that sends one on data ports too) or not
    (one that does not): it is recognised by its signature. With a header, the address
    in it must be the session's client; without one, the connection is taken for the
    session that owns the port. On a download the client sends nothing, so a header
    that has not arrived yet cannot be told from none: the first data connection from a
    balancer waits up to ``proxy_protocol.data_header_wait`` for one; after that the
    balancer is known to send headers (later ones are waited for up to
    ``timeouts.data``) or not (later ones are used at once).
    """

    __slots__ = ("config", "data_timeout", "sends")

    def __init__(self, config: ProxyProtocolConfig, data_timeout: float) -> None:
        self.config = config
        self.data_timeout = data_timeout
        #: balancer -> whether it sends headers on data connections (learnt)
        self.sends: dict[IPAddress, bool] = {}

    def trusts(self, addr: IPAddress) -> bool:
        return self.config.trusts(addr)

    def wait_for(self, balancer: IPAddress) -> float:
        """How long to wait for a header not yet received (0: use the connection now)."""
        known = self.sends.get(balancer)
        if known is None:
            return self.config.data_header_wait
        return self.data_timeout if known else 0.0

    @staticmethod
    def inspect(conn: socket.socket, v2_only: bool = False,
                ) -> tuple[str, proxy.ProxyHeader | None]:
        """Peek at what a relayed connection sent so far: ("header", h) (consumed from
        the socket), ("none", None) (the client's own bytes, or nothing ever: EOF),
        ("more", None) (nothing yet, or part of a header), or ("error: why", None).

        ``v2_only``: from a balancer known not to send headers, only the v2 signature
        (made to never start ordinary data) counts; an upload starting "PROXY " is data.
        """
        try:
            buf = conn.recv(proxy.MAX_HEADER, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return "more", None
        except OSError as e:
            return f"error: {e.strerror or e}", None
        if not buf:
            return "none", None
        if v2_only and buf[:12] != proxy.SIGNATURE_V2[:min(12, len(buf))]:
            return "none", None
        try:
            hdr = proxy.parse(buf) if proxy.starts_header(buf) is not False else False
        except proxy.ProxyError as e:
            return f"error: {e}", None
        if hdr is False:
            return "none", None
        if hdr is None:
            return "more", None
        conn.recv(hdr.length)  # already in the receive queue: all of it comes
        return "header", hdr


class PassiveListener:
    """One PASV/EPSV port: accepts the first connection from the control peer.

    Connections from any other address are closed as they arrive and logged (RFC 2577
    port stealing; once per source, rate-limited). If none comes by ``deadline``
    (``timeout`` from now unless given) the port is given back. ``wait()`` returns the
    data socket or raises :class:`DataError`; ``take_now()`` returns it if it is already
    there. ``on_done`` is called once when the listener stops waiting (connected, timed
    out, closed), for the server's count of waiting ports.

    The socket is watched from the start (see the module's text); in PROT P the TLS
    handshake starts as soon as the client connects.
    """

    __slots__ = ("loop", "sock", "port", "pool", "peer", "timeout", "sid", "_fut",
                 "_timer", "_error", "_open", "_taken", "tls", "handshake", "kept",
                 "_peer_text", "_reading", "_family", "relay", "_pending", "born",
                 "on_done", "_stats")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, port: int,
                 pool: PortPool, peer: IPAddress, timeout: float, sid: str,
                 tls: ssl.SSLContext | None = None, *, family: int | None = None,
                 peer_text: str | None = None, relay: Relay | None = None,
                 deadline: float | None = None,
                 on_done: Callable[[PassiveListener], None] | None = None,
                 stats: Stats | None = None) -> None:
        self.loop, self.sock, self.port, self.pool = loop, sock, port, pool
        #: where a refused connection (port theft) is counted
        self._stats = stats
        self.peer, self.timeout, self.sid = peer, timeout, sid
        #: the peer as accept() spells it (IPv4 on an IPv4 socket): a string compare
        #: first, the parse only when the text differs (~2 us a transfer)
        self._peer_text = str(peer) if peer_text is None else peer_text
        self._family = sock.family if family is None else family
        #: PROT P when PASV was sent: the TLS handshake starts as soon as the client
        #: connects (aioftp handshakes before it sends RETR; ftplib and curl after 150)
        self.tls = tls
        self.handshake: asyncio.Task[TLSChannel] | None = None
        self._fut: asyncio.Future[socket.socket | None] = loop.create_future()
        self._error = ""
        self._open = True
        self._taken = False
        #: the data connection came: the listening socket was left open (and its port
        #: held) for the session's next PASV/EPSV (see ``Session.spare``)
        self.kept = False
        #: a reader is registered on the listening socket
        self._reading = False
        #: trusted balancers whose data connections are taken (None: PROXY off)
        self.relay = relay
        #: a relayed connection whose PROXY header (if any) is awaited: (socket,
        #: balancer, timer)
        self._pending: tuple[socket.socket, IPAddress, asyncio.TimerHandle] | None = None
        self.born = loop.time()
        self.on_done = on_done
        self._watch()
        if deadline is None:
            deadline = self.born + timeout
        self._timer: asyncio.TimerHandle | None = loop.call_at(deadline, self._on_timeout)

    @property
    def deadline(self) -> float | None:
        """When this port is given back if nothing connects (None: no longer waiting)."""
        return self._timer.when() if self._timer is not None else None

    @property
    def waiting(self) -> bool:
        """Still waiting for its data connection."""
        return self._open

    def _watch(self) -> None:
        self._reading = True
        self.loop.add_reader(self.sock.fileno(), self._on_readable)

    def _accept(self) -> socket.socket | None:
        """The control peer's connection if one is waiting (others are closed), else
        None; an accept error ends the listener with that error."""
        if self._pending is not None:
            return None
        for _ in range(16):
            try:
                # the fd, not socket.accept(): that looks the family and type up again
                # (as enums) for every socket it makes
                fd, addr = self.sock._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as e:
                self._finish(None, f"accepting on port {self.port} failed: {e.strerror}")
                return None
            if addr[0] != self._peer_text and ip(str(addr[0])) != self.peer:
                src = ip(str(addr[0]))
                if self.relay is not None and self.relay.trusts(src):
                    conn = socket.socket(self._family, socket.SOCK_STREAM, 0, fd)
                    conn.setblocking(False)
                    if self._relayed(conn, src):
                        return conn
                    if self._pending is not None:
                        return None
                    continue
                if self._stats is not None:
                    self._stats.refused("port_theft")
                os.close(fd)
                stolen(self.sid, self.port, addr[0], self.peer)
                continue
            conn = socket.socket(self._family, socket.SOCK_STREAM, 0, fd)
            conn.setblocking(False)
            return conn
        return None

    # -- data connections relayed by a trusted balancer ---------------------------------

    def _relayed(self, conn: socket.socket, balancer: IPAddress) -> bool:
        """True: ``conn`` is this port's connection. False: it was refused (closed), or
        it is now pending (its header awaited; ``_pending``)."""
        assert self.relay is not None
        known = self.relay.sends.get(balancer)
        verdict, hdr = self.relay.inspect(conn, v2_only=known is False)
        if known is False and verdict != "header":
            return True  # this balancer sends no headers on data connections
        if verdict == "more":
            wait = self.relay.wait_for(balancer)
            if wait <= 0:
                return True
            if self._reading:
                self._reading = False
                self.loop.remove_reader(self.sock.fileno())
            timer = self.loop.call_later(wait, self._pending_expired)
            self._pending = (conn, balancer, timer)
            self.loop.add_reader(conn.fileno(), self._pending_readable)
            return False
        return self._judge(conn, balancer, verdict, hdr)

    def _judge(self, conn: socket.socket, balancer: IPAddress, verdict: str,
               hdr: proxy.ProxyHeader | None) -> bool:
        assert self.relay is not None
        if verdict == "header" and hdr is not None:
            self.relay.sends[balancer] = True
            client = None if hdr.source is None else ip(str(hdr.source[0]))
            if client is None or client == self.peer:
                return True
            THROTTLE.once("port-stealing", f"{client} via {balancer}",
                          "[%s] data connection to port %d relayed by %s for %s refused: "
                          "not the control connection's client %s (port stealing "
                          "protection)", self.sid, self.port, balancer, client, self.peer)
            if self._stats is not None:
                self._stats.refused("port_theft")
        elif verdict == "none":
            self.relay.sends.setdefault(balancer, False)
            return True
        else:
            log.warning("[%s] data connection to port %d relayed by %s refused: %s",
                        self.sid, self.port, balancer, verdict)
        conn.close()
        return False

    def _drop_pending(self) -> tuple[socket.socket, IPAddress] | None:
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        conn, balancer, timer = pending
        timer.cancel()
        self.loop.remove_reader(conn.fileno())
        return conn, balancer

    def _pending_readable(self) -> None:
        if self._pending is None:
            return
        verdict, hdr = Relay.inspect(self._pending[0])
        if verdict == "more":
            return  # part of a header: the rest follows (or the timer ends it)
        got = self._drop_pending()
        assert got is not None
        self._settle(got[0], self._judge(got[0], got[1], verdict, hdr))

    def _pending_expired(self) -> None:
        got = self._drop_pending()
        if got is None:
            return
        conn, balancer = got
        assert self.relay is not None
        verdict, hdr = Relay.inspect(conn)
        if verdict == "more":
            try:
                partial = bool(conn.recv(1, socket.MSG_PEEK))
            except OSError:
                partial = False
            # nothing came: this balancer sends no header on data connections
            verdict = "error: an incomplete PROXY header" if partial else "none"
            if not partial:
                self.relay.sends[balancer] = False
        self._settle(conn, self._judge(conn, balancer, verdict, hdr))

    def _settle(self, conn: socket.socket, ok: bool) -> None:
        """A pending connection was judged: it is this port's, or listen on."""
        if ok:
            self._finish(conn, "")
        elif self._open and self._take() is None and self._open and self._pending is None:
            self._watch()

    def _take(self) -> socket.socket | None:
        """Accept the control peer's waiting connection, if any, as this port's one."""
        conn = self._accept()
        if conn is not None:
            self._finish(conn, "")
        return conn

    def _on_readable(self) -> None:
        if self._open:
            self._take()
        else:  # connected, the socket kept (as the session's spare): nobody else may
            close_strays(self.sock, self.port, self.sid)

    def _on_timeout(self) -> None:
        self._timer = None
        if self._open and self._take() is not None:
            return  # it came in the same turn of the loop as the timer
        self._finish(None, f"no data connection came to port {self.port} within "
                           f"{self.timeout:g} s (timeouts.data)")

    def take_now(self) -> socket.socket | None:
        """The data connection if it has come (clear text only), without waiting; the
        caller owns it. None: use ``wait()``."""
        if self.tls is not None:
            return None
        fut = self._fut
        if fut.done():
            conn = None if fut.cancelled() else fut.result()
        elif self._open and self._pending is None and queued(self.sock):
            conn = self._take()  # queued, its callback not run yet in this turn
        else:
            return None
        if conn is not None:
            self._taken = True
        return conn

    def reclaim(self, why: str) -> None:
        """Stop waiting now and give the port back (the pool needs it); ``wait()`` then
        raises with ``why``."""
        self._finish(None, why)

    def _finish(self, conn: socket.socket | None, error: str) -> None:
        if self._pending is not None:
            dropped = self._drop_pending()
            if dropped is not None and dropped[0] is not conn:
                dropped[0].close()
        if self._open:
            self._open = False
            if conn is not None and not self._fut.done():
                self.kept = True  # still watched: _on_readable closes what comes now
                if not self._reading:
                    self._watch()
            else:
                if self._reading:
                    self._reading = False
                    self.loop.remove_reader(self.sock.fileno())
                self.sock.close()
                self.pool.release(self.port)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.on_done is not None:
                done, self.on_done = self.on_done, None
                done(self)
        if self._fut.done():
            if conn is not None:
                conn.close()
            return
        self._error = error
        if conn is not None and self.tls is not None:
            self.handshake = self.loop.create_task(
                TLSChannel.accept(self.loop, conn, self.tls, self.timeout))
        self._fut.set_result(conn)

    async def wait(self) -> socket.socket:
        if (self._open and not self._reading and self._take() is None and self._open
                and self._pending is None):
            self._watch()
        conn = await self._fut
        self._taken = True
        if conn is None:
            raise DataError(self._error)
        return conn

    def detach(self) -> tuple[socket.socket, int] | None:
        """The kept listening socket and its (still held) port, now the caller's: it
        stays watched (what connects is closed) until :func:`close_spare`, or until a
        new listener on it takes the watch over."""
        if not self.kept:
            return None
        self.kept = False
        return self.sock, self.port

    def close(self) -> None:
        """Give the port back and drop any connection not yet used."""
        if self.kept:  # nobody took the listening socket over
            self.kept = False
            close_spare(self.loop, self.sock)
            self.pool.release(self.port)
        self._finish(None, "data connection closed")
        if self._fut.done() and not self._fut.cancelled():
            conn = self._fut.result()
            if conn is not None and not self._taken:
                if self.handshake is not None:
                    self.handshake.cancel()  # it closes the socket
                else:
                    conn.close()


def stolen(sid: str, port: int, source: str, peer: IPAddress) -> None:
    """A connection to a passive port from another client than the session's: closed;
    said once per source and rate-limited, so a flood of them cannot flood the log."""
    THROTTLE.once("port-stealing", str(source),
                  "[%s] data connection to port %d from %s refused: not the control "
                  "connection's address %s (port stealing protection; further ones "
                  "from %s are closed without a line)", sid, port, source, peer, source)


def close_spare(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Stop watching a kept listening socket and close it."""
    if sock.fileno() >= 0:
        loop.remove_reader(sock.fileno())
    sock.close()


_TCP_INFO = getattr(socket, "TCP_INFO", None)


def queued(sock: socket.socket) -> int | None:
    """Connections waiting in a listening socket's accept queue (Linux: ``tcpi_unacked``
    of ``TCP_INFO`` on a listening socket), or None where that is not known. One
    getsockopt: an accept() that finds nothing costs a BlockingIOError, ~6 us."""
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 32)
    except OSError:
        return None
    if len(info) < 28:
        return None
    n: int = struct.unpack_from("=I", info, 24)[0]
    return n


def drain_backlog(sock: socket.socket, port: int, sid: str) -> None:
    """A kept listening socket about to be offered again (PASV/EPSV): close what came to
    it in this same turn of the loop, before its watcher ran. One getsockopt when
    nothing did (an accept() that finds nothing costs a BlockingIOError)."""
    if queued(sock) != 0:
        close_strays(sock, port, sid)


def close_strays(sock: socket.socket, port: int, sid: str) -> None:
    """Close whatever connected to a kept listening socket between transfers (nobody was
    told to connect then)."""
    for _ in range(16):
        try:
            fd, addr = sock._accept()  # type: ignore[attr-defined]
        except OSError:
            return
        os.close(fd)
        THROTTLE.warn("stray-data", "[%s] closed a connection from %s that came to "
                      "passive port %d between transfers", sid, addr[0], port,
                      level=logging.INFO)


async def connect_active(loop: asyncio.AbstractEventLoop, family: int, local_host: str,
                         source_port: int, target: tuple[str, int], timeout: float,
                         ) -> socket.socket:
    """PORT/EPRT: connect from the control connection's local address (and port 20 when
    ``active.source_port`` says so) to the client."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        if source_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((local_host, source_port))
        await asyncio.wait_for(loop.sock_connect(s, target), timeout)
    except TimeoutError:
        s.close()
        raise DataError(f"could not connect to {target[0]} port {target[1]} within "
                        f"{timeout:g} s (timeouts.data); is a firewall on your side "
                        "blocking inbound connections? Use passive mode") from None
    except OSError as e:
        s.close()
        why = os.strerror(e.errno) if e.errno else str(e)
        raise DataError(f"could not connect to {target[0]} port {target[1]}: "
                        f"{why}; use passive mode if your side refuses "
                        "inbound connections") from None
    except BaseException:
        s.close()
        raise
    return s


def check_source_port(port: int) -> str | None:
    """At start-up: can we bind ``active.source_port``? An error text if not."""
    if not port:
        return None
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
    except OSError as e:
        return e.strerror or str(e)
    finally:
        s.close()
    return None

