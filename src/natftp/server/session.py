"""One control connection: an ``asyncio.Protocol`` feeding the sans-IO line reader.

An idle session is this object, a :class:`LineReader` and one timer handle: no task, no
stream pair. Work that waits (a transfer, the delay after a failed login, a password
hash check) runs as the session's single *busy* task; commands that arrive meanwhile are
queued and handled in order when it ends: every command gets exactly one final reply, in
the order the commands came. The two exceptions are the ones RFC 959 makes for a transfer
in progress: ABOR aborts it, and STAT (without an argument) reports on it, at once, when
the transfer is the one the client is waiting for (nothing else queued before them).
Anything else that is busy (a login) is not a transfer: an ABOR then waits its turn and
is answered 225, "no transfer to abort".

One client cannot hold the loop or the memory (issue 21): at most ``BATCH`` pipelined
commands are handled per turn of the loop (the rest wait their turn behind other
sessions); when the transport's write buffer passes its high-water mark
(``pause_writing``) the session stops handling commands and stops reading until the
client reads its replies; the one timer also enforces ``timeouts.login`` (log in within
it) and ``timeouts.line`` (a command line, once started, must end within it). Why a
session ended is in its "closed" log line.

Behaviour per command lives in :mod:`natftp.server.handlers`, the table that maps names
to handlers in :mod:`natftp.server.commands`. The session imports the table; the table
and the handlers know the session as a type only, so the imports run one way
(handlers, then commands, then session, then app). The object-storage handlers come
from the server (``Server.object_handlers``), which loads them only with a bucket.

With TLS (AUTH TLS, or a connection to an implicit-TLS listener) the control connection
runs through :class:`natftp.server.tls.ControlTLS` between the transport and the line
reader; ``reply()`` encrypts. Each TLS session has its own ``SSLContext``
(``tls_ctx``), which its PROT P data connections are accepted with.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from natftp import logsetup
from natftp.proto import proxy
from natftp.proto.addr import IPAddress, ip
from natftp.proto.commands import BadLine, Command, LineReader
from natftp.proto.listing import MLST_FACTS
from natftp.proto.replies import Reply
from natftp.server import data
from natftp.server.commands import NOT_IMPLEMENTED, OFF_REASON, TABLE, CommandSpec
from natftp.server.config import Permissions, User
from natftp.server.guard import THROTTLE
from natftp.server.tls import CLEARING, HANDSHAKE, OPEN, ControlTLS
from natftp.storage.local import LocalStorage, StorageError, Upload, reply_code
from natftp.storage.s3 import ObjectUpload, S3Storage

if TYPE_CHECKING:
    from natftp.server.app import Server

log = logging.getLogger("natftp.server")
#: the 426's note when an interrupted upload is kept to be resumed
_KEPT = "; what arrived is kept: resume with REST+STOR or APPE"

#: commands queued while busy before the session stops reading from the client
MAX_QUEUED = 64
#: pipelined commands handled in one turn of the loop before other sessions' turn
BATCH = 64
#: a session's unsent replies (bytes) above which it handles no more commands and stops
#: reading until the client reads (the transport's high-water mark; low = a quarter)
WRITE_HIGH = 256 << 10

#: a transfer's verb -> its direction in metrics and the xferlog
_DIRECTION = {"RETR": "download", "STOR": "upload", "APPE": "upload", "STOU": "upload",
              "LIST": "listing", "NLST": "listing", "MLSD": "listing"}

_PERM_NOUN = {"list": "Listing", "read": "Downloads", "write": "Writes",
              "delete": "Deletes", "rename": "Renames", "mkdir": "Creating directories",
              "chmod": "Permission changes (SITE CHMOD)"}


class Session(asyncio.Protocol):
    __slots__ = (
        "server", "loop", "transport", "sid", "client_ip", "peer_text", "peer_port", "local",
        "family",
        "reader", "user", "login_name", "storage", "perms", "perm_source", "cwd", "binary",
        "rest", "rnfr", "pending_user", "failures", "epsv_all", "pasv", "port_target",
        "busy", "queue", "abor_pending", "abort_reason", "last_active", "idle_handle",
        "closing", "mlst_facts", "paused", "started", "counted", "implicit", "tls",
        "tls_ctx", "tls_note", "prot_p", "pbsz", "hs_handle", "held", "spare",
        "via", "server_ip", "proxy_buf", "proxy_handle", "fresh", "quiet", "xfer",
        "xfer_running", "wpaused", "drainer", "line_at", "end_reason", "turn", "end",
        "last_cmd", "xfer_at",
    )

    def __init__(self, server: Server, implicit: bool = False) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.sid = server.next_sid()
        #: THE client's address, set once: the TCP peer, or the address in the PROXY
        #: header of a trusted balancer. Logs, limits, bans, the address policy and the
        #: data connections' peer check all use this one.
        self.client_ip: IPAddress = ip("0.0.0.0")
        #: the client's address as the kernel spells it (for a cheap compare on accept)
        self.peer_text = "0.0.0.0"
        #: the balancer that relayed this session (its PROXY header named the client)
        self.via: IPAddress | None = None
        #: the address the client connected to: the header's destination through a
        #: balancer, else this socket's local address (what the address policy is asked)
        self.server_ip: IPAddress = ip("0.0.0.0")
        #: bytes of a trusted balancer's PROXY header so far (None: not waiting for one)
        self.proxy_buf: bytearray | None = None
        self.proxy_handle: asyncio.TimerHandle | None = None
        #: nothing received yet (a PROXY header from an untrusted peer is refused)
        self.fresh = True
        #: a balancer's health check (PROXY LOCAL): logged at debug level only
        self.quiet = False
        self.peer_port = 0
        self.local: tuple[Any, ...] = ("0.0.0.0", 0)
        self.family = socket.AF_INET
        self.reader = LineReader(server.config.limits.max_line)
        self.user: User | None = None
        self.login_name = ""
        #: the user's files: local disk, or a key prefix in object storage ([storage])
        self.storage: LocalStorage | S3Storage | None = None
        self.perms = Permissions.read_only()
        self.perm_source: dict[str, str] = {}
        self.cwd = "/"
        self.binary = False
        self.rest = 0
        self.rnfr: str | None = None
        self.pending_user: str | None = None
        self.failures = 0
        self.epsv_all = False
        self.pasv: data.PassiveListener | None = None
        self.port_target: tuple[str, int] | None = None
        self.busy: asyncio.Task[None] | None = None
        self.queue: deque[Command | BadLine] | None = None
        self.abor_pending = False
        self.abort_reason = ""
        self.last_active = 0.0
        self.idle_handle: asyncio.TimerHandle | None = None
        self.closing = False
        self.mlst_facts: tuple[str, ...] = MLST_FACTS
        #: reading paused by this session (queue full, or replies not read)
        self.paused = False
        #: loop time the session was opened (for timeouts.login)
        self.started = 0.0
        #: the transport said its write buffer is over the high-water mark
        self.wpaused = False
        #: a busy task waiting for that buffer to drain (a streamed STAT reply)
        self.drainer: asyncio.Future[None] | None = None
        #: loop time the command line being received began (0.0: none partial)
        self.line_at = 0.0
        #: why the session ends, when the server ends it (for the "closed" line)
        self.end_reason = ""
        #: a turn of the loop is scheduled to handle queued commands
        self.turn = False
        self.counted = False
        #: connected to an implicit-TLS listener (TLS before the banner)
        self.implicit = implicit
        #: TLS on the control connection (None: in the clear, never or after CCC)
        self.tls: ControlTLS | None = None
        #: this session's TLS context (kept after CCC: data connections still use it)
        self.tls_ctx: ssl.SSLContext | None = None
        self.tls_note = ""
        self.prot_p = False
        self.pbsz = False
        self.hs_handle: asyncio.TimerHandle | None = None
        #: a formatted reply (a download's 150) not written yet: it goes out in front of
        #: the next reply, or by itself when the transfer first has to wait
        self.held = b""
        #: the listening socket (and its pool port) of the last passive data connection,
        #: kept for the next PASV/EPSV: no socket/bind/listen per transfer. Registered in
        #: ``server.spares``; given back when the session ends, or taken back by the
        #: server when the pool has no free port left.
        self.spare: tuple[socket.socket, int] | None = None
        #: the transfer that is the busy task, until its final reply: (verb, path, bytes
        #: moved); ABOR and STAT act on it at once
        self.xfer: tuple[str, str, data.Progress] | None = None
        #: that transfer's coroutine has started (before, it cannot be cancelled: it
        #: would never run, nor reply, nor close its file; it checks ``abort_reason``)
        self.xfer_running = False
        #: how the session ended, for natftp_sessions_total (set where it is decided)
        self.end = "closed"
        #: the command handled last, and when ``xfer`` started: for the status page only,
        #: read when it renders
        self.last_cmd: Command | None = None
        self.xfer_at = 0.0

    # -- connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack alike
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        peername = transport.get_extra_info("peername")
        sockname = transport.get_extra_info("sockname")
        if not peername or not sockname:
            # reset by the peer before this callback (uvloop reports no address then):
            # nothing to serve and nothing worth a line; counted for metrics
            self.server.counts["reset_at_accept"] += 1
            self.closing = True
            self.transport.abort()
            return
        self.transport.set_write_buffer_limits(WRITE_HIGH)
        self.local = tuple(sockname)
        self.server_ip = ip(str(self.local[0]))
        self.peer_text = str(peername[0])
        self.client_ip = ip(self.peer_text)
        self.peer_port = int(peername[1])
        if sock is not None:
            self.family = sock.family
            # each reply must start its own TCP segment: the kernel's FTP helper only
            # parses a 227 at the start of one
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # ABOR sent with MSG_OOB must stay in the stream, or its last byte is lost
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        pp = self.server.config.proxy_protocol
        if pp.trusted and pp.trusts(self.client_ip):
            # a trusted balancer: say nothing until its header names the client
            self.via = self.client_ip
            self.proxy_buf = bytearray()
            self.proxy_handle = self.loop.call_later(pp.header_timeout, self._proxy_timeout)
            return
        self._open()

    def _open(self) -> None:
        """The client is known: admit it (limits), log it, and greet it."""
        refusal = self.server.admit(self)
        if refusal is not None:
            kind, text = refusal
            THROTTLE.warn(f"refused-{kind}", "[%s] connection from %s refused: %s",
                          self.sid, self.client_ip, text)
            self.reply(421, text)
            self.close()
            return
        self.counted = True
        via = f" via {self.via}" if self.via is not None else ""
        logsetup.log(log, logging.DEBUG if self.quiet else logging.INFO,
                     "[%s] connection from %s port %d%s%s", self.sid, self.client_ip,
                     self.peer_port, via, " (implicit TLS)" if self.implicit else "")
        self.last_active = self.started = self.loop.time()
        t = self.server.config.timeouts
        self._arm_idle(min(t.idle, t.login))
        if self.implicit:
            self.start_tls()  # the banner follows the handshake
        else:
            self.reply(220, self.server.config.banner)

    # -- PROXY protocol (a trusted balancer in front) ---------------------------------

    def _proxy_received(self, buf: bytearray, chunk: bytes) -> None:
        buf += chunk
        try:
            hdr = proxy.parse(bytes(buf))
        except proxy.ProxyError as e:
            self._proxy_refuse(f"its PROXY protocol header is invalid ({e})")
            return
        if hdr is None:
            return
        if self.proxy_handle is not None:
            self.proxy_handle.cancel()
            self.proxy_handle = None
        self.proxy_buf = None
        rest = bytes(buf[hdr.length:])
        if hdr.source is None:
            # LOCAL (a health check) or UNKNOWN: the connection's own endpoints count
            self.quiet = hdr.command == "LOCAL"
            self.event("%s from balancer %s", hdr.describe(), self.via, level=logging.DEBUG)
        else:
            self.client_ip = ip(str(hdr.source[0]))
            self.peer_text = str(self.client_ip)
            self.peer_port = hdr.source[1]
            if hdr.destination is not None:
                self.server_ip = ip(str(hdr.destination[0]))
        self._open()
        if rest and not self.closing:
            self.data_received(rest)

    def _proxy_timeout(self) -> None:
        self.proxy_handle = None
        if self.proxy_buf is not None and not self.closing:
            self._proxy_refuse(
                f"it sent no complete PROXY protocol header within "
                f"{self.server.config.proxy_protocol.header_timeout:g} s "
                "(proxy_protocol.header_timeout)")

    def _proxy_refuse(self, why: str) -> None:
        """A trusted balancer's connection without a valid header: say so and close."""
        self.proxy_buf = None
        self.event("connection from balancer %s refused: %s (it is in "
                   "proxy_protocol.trusted, so it must send one)", self.via, why,
                   level=logging.WARNING)
        self.reply(421, f"Connection refused: the load balancer in front of this server "
                        f"is misconfigured ({why}).")
        self.close()

    def _spoofed_header(self, chunk: bytes) -> bool:
        """The first bytes from a peer that is not a trusted balancer are a PROXY header:
        refuse them (a client must not choose the address it is known by)."""
        self.fresh = False
        if proxy.starts_header(chunk) is not True:
            return False
        self.refuse(500, f"PROXY protocol header refused: {self.peer_text} is not a trusted "
                         "load balancer (proxy_protocol.trusted).", level=logging.WARNING)
        self.close("PROXY header from a peer not trusted to send one")
        return True

    # -- TLS on the control connection ---------------------------------------------------

    def start_tls(self) -> None:
        """Begin the server side of a TLS handshake (after 234, or at once when implicit).
        Plaintext already read is dropped: nothing sent before TLS may count after it."""
        self.tls_ctx = self.server.certs_context()
        self.tls = ControlTLS(self.tls_ctx)
        self.reader = LineReader(self.server.config.limits.max_line)
        self.line_at = 0.0
        if self.queue:
            self.queue.clear()
        self.hs_handle = self.loop.call_later(self.server.config.timeouts.data,
                                              self._handshake_timeout)

    def _handshake_timeout(self) -> None:
        self.hs_handle = None
        if self.tls is not None and self.tls.state == HANDSHAKE and not self.closing:
            THROTTLE.warn("tls-failed", "[%s] TLS handshake from %s not finished within "
                          "%g s (timeouts.data); closing", self.sid, self.client_ip,
                          self.server.config.timeouts.data)
            self.server.stats.handshake("control", "failed")
            self.end = "tls_error"
            self.abort_connection("TLS handshake not finished in time")

    def _flush_tls(self) -> None:
        t = self.transport
        if self.tls is not None and t is not None and not t.is_closing():
            out = self.tls.outgoing()
            if out:
                t.write(out)

    def _tls_received(self, tls: ControlTLS, chunk: bytes) -> bytes | None:
        """Decrypt; None when nothing is left for the line reader."""
        t = self.transport
        if tls.state == CLEARING:
            rest = tls.receive_clearing(chunk)
            self._flush_tls()
            if rest is None:
                return None
            self.tls = None
            self.event("control connection in the clear from now (CCC)")
            return rest
        if self.implicit and not tls.received and chunk[:1] != b"\x16" and t is not None:
            # a plain FTP client (or anything else) on the implicit port: say so in clear
            THROTTLE.warn("tls-failed", "[%s] %s sent no TLS handshake to the implicit-TLS "
                          "port; closing", self.sid, self.client_ip)
            t.write(b"421 This port speaks implicit FTPS: start TLS at once (ftps://), or "
                    b"use AUTH TLS on the plain FTP port.\r\n")
            self.end = "tls_error"
            self.close("no TLS handshake on the implicit-TLS port")
            return None
        try:
            plain, established = tls.receive(chunk)
        except ssl.SSLError as e:
            self._flush_tls()  # the alert, if any
            what = "handshake" if tls.state == HANDSHAKE else "record"
            THROTTLE.warn("tls-failed", "[%s] TLS %s with %s failed: %s; closing",
                          self.sid, what, self.client_ip, e.reason or e)
            if tls.state == HANDSHAKE:
                self.server.stats.handshake("control", "failed")
            self.end = "tls_error"
            self.abort_connection(f"TLS {what} failed")
            return None
        except EOFError:
            self.event("client ended TLS without CCC (close_notify); closing")
            self.close("client ended TLS (close_notify)")
            return None
        self._flush_tls()
        if established:
            if self.hs_handle is not None:
                self.hs_handle.cancel()
                self.hs_handle = None
            self.tls_note = tls.describe()
            self.server.stats.handshake(
                "control", "resumed" if tls.obj.session_reused else "new")
            if self.tls_ctx is not None:
                # data connections resume the tickets issued here; new tickets on them
                # are of no use, and lftp (GnuTLS) sometimes dropped an upload on them
                self.tls_ctx.num_tickets = 0
            self.event("TLS established with %s (%s%s)", self.client_ip, self.tls_note,
                       ", implicit" if self.implicit else "")
            if self.implicit:
                self.reply(220, self.server.config.banner)
        return plain or None

    def clear_tls(self) -> None:
        """CCC (after its 200): send close_notify; the clear text that follows, after the
        client's close_notify or without one, is read by ``_tls_received``."""
        if self.tls is not None and self.tls.state == OPEN:
            self._write(self.tls.clear())

    def abort_connection(self, why: str = "") -> None:
        self.end_reason = self.end_reason or why
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, chunk: bytes) -> None:
        if self.proxy_buf is not None:
            self._proxy_received(self.proxy_buf, chunk)
            return
        if self.fresh and self._spoofed_header(chunk):
            return
        now = self.last_active = self.loop.time()
        tls = self.tls
        if tls is not None:
            got = self._tls_received(tls, chunk)
            if got is None:
                return
            chunk = got
            tls = self.tls  # None after CCC
        reader = self.reader
        events = reader.feed(chunk)
        if reader.partial:
            if not self.line_at:
                self._line_started(now)
        elif self.line_at:
            self.line_at = 0.0
        handled = 0
        for ev in events:
            if self.closing or self.tls is not tls:
                return  # closed, or AUTH TLS started: the rest was sent in the clear
            if self.busy is not None or self.queue or self.wpaused or handled >= BATCH:
                if self.busy is not None and not self.queue and self._urgent(ev):
                    self._interrupt(ev)
                    continue
                if self.queue is None:
                    self.queue = deque()
                self.queue.append(ev)
                continue
            self.handle(ev)
            handled += 1
        if self.queue:
            self._flow()
            if self.busy is None and not self.wpaused:
                self._next_turn()

    # -- flow control: one session cannot hold the loop or fill memory with replies ----

    def _flow(self) -> None:
        """Pause reading while the queue is full or replies are not read; resume when
        the replies are read and the queue is down to half."""
        t = self.transport
        if t is None or self.closing:
            return
        queued = len(self.queue) if self.queue is not None else 0
        if self.wpaused or queued >= MAX_QUEUED:
            if not self.paused:
                self.paused = True
                t.pause_reading()
        elif self.paused and queued < MAX_QUEUED // 2:
            self.paused = False
            if self.line_at:  # the client could not send while we did not read
                self._line_started(self.loop.time())
            t.resume_reading()

    def _next_turn(self) -> None:
        if not self.turn:
            self.turn = True
            self.loop.call_soon(self._drain_queue)

    def _drain_queue(self) -> None:
        """Handle queued commands in order, at most BATCH in this turn of the loop."""
        self.turn = False
        n = 0
        while self.queue and not self.closing and not self.wpaused:
            if n >= BATCH:
                self._next_turn()
                break
            if self.busy is None:
                self.handle(self.queue.popleft())
            elif self._urgent(self.queue[0]):
                # ABOR or STAT right behind the transfer just started: it is this one's
                self._interrupt(self.queue.popleft())
            else:
                break
            n += 1
        self._flow()

    def pause_writing(self) -> None:
        """The transport holds WRITE_HIGH bytes of replies the client has not read."""
        self.wpaused = True
        self._flow()
        THROTTLE.once("unread-replies", self.sid, "[%s] %s does not read its replies "
                      "(%d KiB unsent): its commands wait until it does", self.sid,
                      self.client_ip, WRITE_HIGH >> 10, level=logging.INFO)

    def resume_writing(self) -> None:
        self.wpaused = False
        waiter, self.drainer = self.drainer, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._drain_queue()

    async def drained(self) -> None:
        """Wait until the client has read enough of the replies (a long reply written
        in parts); at once when it has."""
        if self.wpaused and not self.closing:
            self.drainer = self.loop.create_future()
            await self.drainer

    def connection_lost(self, exc: Exception | None) -> None:
        client_ended = not self.closing
        self.closing = True
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        if self.hs_handle is not None:
            self.hs_handle.cancel()
            self.hs_handle = None
        if self.proxy_handle is not None:
            self.proxy_handle.cancel()
            self.proxy_handle = None
        self.close_data()
        self.drop_spare()
        self.abort("control connection closed")
        if self.drainer is not None and not self.drainer.done():
            self.drainer.cancel()
        if self.counted:
            self.counted = False
            self.server.release(self)
            if exc is not None:
                why = f"connection lost: {getattr(exc, 'strerror', None) or exc}"
            elif client_ended:
                why = "the client closed the connection"
            else:
                why = self.end_reason or "closed by the server"
            self.server.stats.session_ended(self.end)
            logsetup.log(log, logging.DEBUG if self.quiet else logging.INFO,
                         "[%s] closed (%s): %s", self.sid,
                         self.login_name or "not logged in", why)
        self.transport = None

    def close(self, why: str = "") -> None:
        """Close after the replies already written have gone out; ``why`` goes into the
        session's "closed" line."""
        self.end_reason = self.end_reason or why
        self.closing = True
        if self.transport is not None:
            self.clear_tls()  # close_notify before FIN
            self.transport.close()

    def shutdown(self, why: str) -> None:
        """Server stop: abort a transfer (its cleanup runs), say 421, close."""
        if self.busy is not None:
            self.abort(why)
        self.end = "server_stop"
        self.reply(421, f"Server shutting down ({why}); closing the connection.")
        self.close(why)

    # -- replies and logging ---------------------------------------------------------

    def reply(self, code: int, *lines: str) -> None:
        """One reply, in its own write (so it starts a TCP segment: TCP_NODELAY)."""
        if len(lines) == 1:
            text = lines[0]
            if "\n" not in text and "\r" not in text:
                # the common one-line reply, formatted as Reply.format would
                self._send_after_held(f"{code} {text}\r\n".encode("utf-8",
                                                                   "surrogateescape"))
                return
        self.send_reply(Reply.of(code, *lines))

    def send_reply(self, reply: Reply) -> None:
        self._send_after_held(reply.format())

    def _send_after_held(self, data: bytes) -> None:
        """A formatted reply, behind the held one if there is one (in the same write)."""
        if self.held:
            data, self.held = self.held + data, b""
        self._send(data)

    def write_reply(self, part: bytes) -> None:
        """Part of a long reply, already formatted (a streamed STAT): written as is."""
        self._send_after_held(part)

    def flush_held(self) -> None:
        """Write the held reply now (the transfer is about to wait)."""
        if self.held:
            data, self.held = self.held, b""
            self._send(data)

    def _send(self, data: bytes) -> None:
        tls = self.tls
        if tls is not None:
            if tls.state != OPEN:
                return
            try:
                data = tls.encrypt(data)
            except ssl.SSLError:
                return
        self._write(data)

    def _write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing() and data:
            t.write(data)

    def refuse(self, code: int, text: str, *, level: int = logging.INFO,
               kind: str = "") -> None:
        """A refusal: the reply says what and why, and the event is logged once.
        ``kind``: a refusal a client can repeat at will (a flood), whose line is
        rate-limited per kind (see :class:`natftp.server.guard.Throttle`)."""
        if kind:
            THROTTLE.warn(f"refused-{kind}", "[%s] %s %s: refused %d %s", self.sid,
                          self.client_ip, self.login_name or "-", code, text, level=level)
        else:
            logsetup.log(log, level, "[%s] %s %s: refused %d %s", self.sid, self.client_ip,
                         self.login_name or "-", code, text)
        self.reply(code, text)

    def event(self, text: str, *args: object, level: int = logging.INFO) -> None:
        logsetup.log(log, level, "[%s] " + text, self.sid, *args)

    # -- dispatch --------------------------------------------------------------------

    def handle(self, ev: Command | BadLine) -> None:
        if isinstance(ev, BadLine):
            self.refuse(ev.code, ev.reason)
            return
        self.last_cmd = ev
        if log.isEnabledFor(logging.DEBUG):
            log.debug("[%s] <- %s", self.sid, ev.masked())
        spec = TABLE.get(ev.name)
        if spec is None:
            why = NOT_IMPLEMENTED.get(ev.name)
            if why is not None:
                self.refuse(502, f"{ev.name} is not implemented by this server ({why}).")
            else:
                self.refuse(500, f"Unknown command {ev.name!r}; HELP lists the commands.")
            return
        if spec.needs is not None and spec.needs not in self.server.caps:
            self.refuse(502, f"{ev.name} is not available: {OFF_REASON[spec.needs]}.")
            return
        if self.rnfr is not None and ev.name != "RNTO" and ev.name != "RNFR":
            self.rnfr = None
        self.dispatch(spec, ev.name, ev.arg)

    def dispatch(self, spec: CommandSpec, name: str, arg: str) -> None:
        """Check a table row's preconditions (login, argument, permission), then run its
        handler. ``spec`` is a ``CommandSpec`` (a command, or a SITE subcommand named
        ``SITE X``)."""
        if spec.login and self.user is None:
            self.refuse(530, f"Please log in with USER and PASS before {name}.")
            return
        if spec.arg and not arg.strip():
            self.refuse(501, f"{name} needs an argument: {spec.arg}.")
            return
        if spec.perm is not None and not getattr(self.perms, spec.perm):
            self.deny(spec.perm)
            return
        handler = spec.handler
        if isinstance(self.storage, S3Storage):
            handler = self.server.object_handlers.get(spec.name, handler)
        try:
            result = handler(self, arg)
        except Exception:
            log.exception("[%s] %s failed", self.sid, name)
            self.reply(451, f"{name} failed: internal server error (logged).")
            return
        if result is not None:
            self.run_busy(result)

    def deny(self, perm: str) -> None:
        self.server.stats.refused("permission")
        who = f'user "{self.login_name}"' if self.login_name else "this user"
        self.refuse(550, f"{_PERM_NOUN[perm]} are disabled for {who} "
                         f"({self.perm_source.get(perm, f'permissions.{perm} = false')}).")

    def run_busy(self, coro: Coroutine[Any, Any, None]) -> None:
        self.busy = self.loop.create_task(coro)
        self.busy.add_done_callback(self._busy_done)

    def _busy_done(self, task: asyncio.Task[None]) -> None:
        self.busy = None
        self.abort_reason = ""
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                log.error("[%s] command failed", self.sid, exc_info=exc)
                self.reply(451, "Command failed: internal server error (logged).")
        self.xfer = None
        self.xfer_running = False
        if self.abor_pending:
            self.abor_pending = False
            self.reply(226, "ABOR command successful; the transfer was aborted.")
        if self.closing:
            return
        self.last_active = self.loop.time()
        self._drain_queue()

    def _urgent(self, ev: Command | BadLine) -> bool:
        """Whether ``ev`` acts on the running transfer now instead of waiting its turn:
        ABOR (once) and STAT without an argument, while a transfer has not replied."""
        if self.xfer is None or not isinstance(ev, Command):
            return False
        if ev.name == "ABOR":
            return not self.abor_pending
        return ev.name == "STAT" and not ev.arg.strip() and not self.abor_pending

    def _interrupt(self, ev: Command | BadLine) -> None:
        if isinstance(ev, Command) and ev.name == "ABOR":
            if log.isEnabledFor(logging.DEBUG):
                log.debug("[%s] <- ABOR (transfer in progress)", self.sid)
            self.abort("aborted by ABOR")
            self.abor_pending = True  # 226 once the transfer has replied 426
        else:
            self.handle(ev)  # STAT: the status, with the transfer's progress

    def abort(self, why: str) -> None:
        """Cancel the busy task (a transfer replies 426 and cleans up). A transfer that
        has not started yet is not cancelled but told: it starts, sees ``abort_reason``
        and ends the same way (a task cancelled before it runs never runs its cleanup)."""
        if self.busy is not None:
            self.abort_reason = self.abort_reason or why
            if self.xfer is None or self.xfer_running:
                self.busy.cancel()

    # -- timers ----------------------------------------------------------------------

    def _arm_idle(self, delay: float) -> None:
        self.idle_handle = self.loop.call_later(delay, self._idle_check)

    def _line_started(self, now: float) -> None:
        """A command line began and did not end in this read: it must end within
        ``timeouts.line`` (bring the timer forward if it fires later than that)."""
        self.line_at = now
        due = now + self.server.config.timeouts.line
        h = self.idle_handle
        if h is not None and h.when() > due:
            h.cancel()
            self.idle_handle = self.loop.call_at(due, self._idle_check)

    def _idle_check(self) -> None:
        """The session's one timer: idle, login and line deadlines."""
        self.idle_handle = None
        if self.closing:
            return
        t = self.server.config.timeouts
        now = self.loop.time()
        # (when, the 421's text, why for the "closed" line, how it ended for metrics);
        # none while a command runs but the line deadline
        deadlines: list[tuple[float, str, str, str]] = []
        if self.busy is None:
            if self.user is None:
                deadlines.append((self.started + t.login, f"Not logged in within "
                                  f"{t.login:g} s (timeouts.login)", "not logged in in time",
                                  "login_timeout"))
            deadlines.append((self.last_active + t.idle, f"Idle for {t.idle:g} s "
                              "(timeouts.idle)", "idle timeout", "idle_timeout"))
        if self.line_at and not self.paused:
            deadlines.append((self.line_at + t.line, f"Command line not finished within "
                              f"{t.line:g} s (timeouts.line)",
                              "command line not finished in time", "line_timeout"))
        due = now + t.idle
        for when, text, why, end in deadlines:
            if now >= when - 0.05:
                self.refuse(421, f"{text}; closing the connection.")
                self.end = end
                self.close(why)
                return
            due = min(due, when)
        self.idle_handle = self.loop.call_at(due, self._idle_check)

    # -- data connections ------------------------------------------------------------

    def close_data(self) -> None:
        if self.pasv is not None:
            self.pasv.close()
            self.pasv = None
        self.port_target = None

    def take_spare(self) -> tuple[socket.socket, int] | None:
        spare, self.spare = self.spare, None
        if spare is not None:
            self.server.spares.pop(self, None)
        return spare

    def drop_spare(self) -> None:
        """Close the kept listening socket and give its port back to the pool."""
        spare = self.take_spare()
        if spare is not None:
            data.close_spare(self.loop, spare[0])
            self.server.pool.release(spare[1])

    def retire(self, listener: data.PassiveListener) -> None:
        """A passive listener whose connection was taken (or failed): its listening
        socket becomes the session's spare if it kept one, else it is closed."""
        kept = None if self.closing else listener.detach()
        listener.close()
        if kept is not None:
            self.drop_spare()
            self.spare = kept
            self.server.spares[self] = None

    def has_data_setup(self) -> bool:
        return self.pasv is not None or self.port_target is not None

    async def open_data(self) -> tuple[socket.socket, asyncio.Task[data.TLSChannel] | None]:
        """The data connection's socket, and its TLS handshake if already started."""
        if self.pasv is not None:
            listener, self.pasv = self.pasv, None
            if (listener.tls is not None) != self.prot_p:
                listener.close()
                raise data.DataError("PROT changed after PASV/EPSV; send PASV or EPSV again")
            try:
                return await listener.wait(), listener.handshake
            finally:
                self.retire(listener)
        if self.port_target is not None:
            target, self.port_target = self.port_target, None
            cfg = self.server.config
            return await data.connect_active(self.loop, self.family, self.local[0],
                                             cfg.active.source_port, target,
                                             cfg.timeouts.data), None
        raise data.DataError("no data connection set up; send PASV, EPSV, PORT or EPRT "
                             "first")

    async def data_channel(self, sock: socket.socket,
                           handshake: asyncio.Task[data.TLSChannel] | None) -> data.Channel:
        """The data connection as a channel: TLS in PROT P (and the session-reuse policy
        checked), else the socket itself."""
        if not self.prot_p:
            return data.PlainChannel(self.loop, sock)
        assert self.tls_ctx is not None
        cfg = self.server.config
        if handshake is None:
            handshake = self.loop.create_task(data.TLSChannel.accept(
                self.loop, sock, self.tls_ctx, cfg.timeouts.data))
        try:
            chan = await handshake
        except asyncio.CancelledError:
            handshake.cancel()
            raise
        except data.DataError:
            self.server.stats.handshake("data", "failed")
            raise
        self.server.stats.handshake("data", "resumed" if chan.reused else "new")
        if cfg.tls.require_session_reuse and not chan.reused:
            await chan.close()  # close_notify: the client reads an empty file, then 522
            raise data.DataError(
                "not a resumption", 522, "Data connection refused: its TLS session does not "
                "resume this control connection's session (tls.require_session_reuse = "
                "true); use a client that reuses the TLS session on data connections "
                "(curl, lftp, natftp), or ask the administrator to turn the setting off.")
        return chan

    def send_now(self, conn: socket.socket, fd: int, offset: int, end: int, what: str,
                 mark: str) -> Coroutine[Any, Any, None] | None:
        """A binary RETR in the clear whose data connection has already come: sendfile
        at once, in this callback. A file that fits into the socket's buffer is sent,
        the data connection closed and 150+226 written in one go: no task, no timer, no
        reader. If the socket fills up first, what is left is a :meth:`transfer` on this
        connection (returned, for the busy task) that goes on from where this stopped."""
        started = time.monotonic()
        out = conn.fileno()
        sent = 0
        try:
            while offset < end:
                n = os.sendfile(out, fd, offset, end - offset)
                if n == 0:
                    break
                offset += n
                sent += n
        except (BlockingIOError, InterruptedError):
            first = sent

            async def rest(chan: data.Channel, prog: data.Progress) -> int:
                return first + await chan.send_file(fd, offset, prog, end)
            return self.transfer("RETR", what, mark, rest, fd=fd, hold_mark=True,
                                 conn=conn, done=first)
        except OSError as e:
            conn.close()
            os.close(fd)
            self.held = Reply.of(150, mark).format()  # 150, then why the transfer failed
            self.refuse(426, f"RETR {what}: data connection or file failed "
                             f"({e.strerror or e}) after {sent} bytes.")
            self.transferred("RETR", what, "failed", sent, time.monotonic() - started)
            return None
        conn.close()
        os.close(fd)
        secs = time.monotonic() - started
        self.transferred("RETR", what, "ok", sent, secs)
        self.event("RETR %s: %d bytes in %.2f s", what, sent, secs)
        self.held = Reply.of(150, mark).format()
        self.reply(226, f"Transfer complete ({sent} bytes).")
        return None

    def transfer(self, verb: str, what: str, mark: str,
                 body: Callable[[data.Channel, data.Progress], Awaitable[int]],
                 upload: Upload | ObjectUpload | None = None, fd: int | None = None,
                 hold_mark: bool = False, conn: socket.socket | None = None,
                 done: int = 0) -> Coroutine[Any, Any, None]:
        """The busy task of a transfer (:meth:`_transfer`), made the one that ABOR and
        STAT act on. ``done``: bytes already sent (see :meth:`send_now`)."""
        progress = data.Progress()
        progress.bytes = done
        self.xfer = (verb, what, progress)
        self.xfer_at = time.monotonic()
        return self._transfer(verb, what, mark, body, progress, upload, fd, hold_mark, conn)

    async def _transfer(self, verb: str, what: str, mark: str,
                        body: Callable[[data.Channel, data.Progress], Awaitable[int]],
                        progress: data.Progress,
                        upload: Upload | ObjectUpload | None, fd: int | None,
                        hold_mark: bool, conn: socket.socket | None) -> None:
        """Open the data connection, say 150, run ``body``, say 226 or why not.

        Every exit path closes the socket and the file, and ends an unfinished upload
        (:meth:`_upload_failed`: kept to be resumed, or rolled back; the file it would
        have replaced stays as it was).

        ``hold_mark`` (a binary RETR: ``body`` only waits inside ``send_file``): in the
        clear, the 150 is held until the transfer first has to wait for the socket, and
        the watchdog is armed only then. A small file is all in the socket and the data
        connection closed before either: its 150 and 226 go out in one write, in that
        order (the client sees the same replies; the data was all sent before the 226,
        as always), with no watchdog timer.

        ``conn``: the data connection, already taken (see :meth:`send_now`).

        The final reply (226, 426, 425...) ends ``xfer`` first: an ABOR or STAT that
        comes after it is not about this transfer any more, and waits its turn.
        """
        watchdog: asyncio.TimerHandle | None = None
        sock: socket.socket | None = None
        handshake: asyncio.Task[data.TLSChannel] | None = None
        chan: data.Channel | None = None
        ok = False
        how = ""
        started = time.monotonic()
        timeout = self.server.config.timeouts.data
        seen = [-1]

        def watch() -> None:
            nonlocal watchdog
            if progress.bytes == seen[0]:
                self.abort(f"no data moved for {timeout:g} s (timeouts.data)")
                return
            seen[0] = progress.bytes
            watchdog = self.loop.call_later(timeout, watch)

        try:
            self.xfer_running = True
            if conn is not None:
                sock, conn = conn, None
            if self.abort_reason:
                # aborted before it started (ABOR in the same read as the command): the
                # data connection it would have used is closed, as ABOR says
                self.close_data()
                if sock is not None:
                    self.held = Reply.of(150, mark).format()  # data moved (send_now)
                raise asyncio.CancelledError
            if sock is None:
                sock, handshake = await self.open_data()
            if hold_mark and not self.prot_p:
                self.held = Reply.of(150, mark).format()
                chan = data.PlainChannel(self.loop, sock)
                sock = None

                def first_wait() -> None:
                    self.flush_held()
                    if watchdog is None:
                        watch()
                chan.on_wait = first_wait
            else:
                self.reply(150, mark)
                watch()
                chan = await self.data_channel(sock, handshake)
                sock = None  # the channel closes it
            if isinstance(chan, data.TLSChannel):
                how = (f" over {chan.version}, session "
                       f"{'resumed' if chan.reused else 'not resumed'}")
            n = await body(chan, progress)
            if upload is not None:
                if self.control_gone():
                    # a killed client closes both connections at once: the end of the
                    # data is then no proof that the file is complete
                    raise OSError(errno.ECONNABORTED, "the control connection closed "
                                  "before the upload ended")
                if isinstance(upload, Upload) and progress.bytes >= COMMIT_IN_THREAD:
                    await _commit_in_thread(upload)
                    done = None
                else:
                    done = upload.commit()
                if done is not None:  # object storage: the multipart upload completes
                    try:
                        await done
                    except StorageError as e:
                        raise OSError(errno.EIO, str(e)) from None
            ok = True
            closing, chan = chan, None
            await closing.close()
        except data.DataError as e:
            self.xfer = None
            if upload is not None:
                upload.discard()  # nothing arrived: nothing to keep
            self.refuse(e.code, e.reply_text or f"Cannot open data connection: {e}.")
            self.transferred(verb, what, "failed", progress.bytes,
                             time.monotonic() - started)
            return
        except asyncio.CancelledError:
            self.xfer = None
            why = self.abort_reason or "cancelled"
            kept = self._upload_failed(upload, what)
            if not self.closing:
                kept = await self._settled(upload, kept)
            self.refuse(426, f"{verb} {what}: transfer aborted ({why}) after "
                             f"{progress.bytes} bytes{kept}.")
            self.transferred(verb, what, "aborted", progress.bytes,
                             time.monotonic() - started)
            if self.closing or (why != "aborted by ABOR" and "timeouts.data" not in why):
                raise
            return
        except OSError as e:
            self.xfer = None
            code = reply_code(e)
            if code != 550 and upload is not None:
                # RFC 959: 452 insufficient storage, 552 exceeded storage allocation
                self._upload_failed(upload, what, full=True)
                self.refuse(code, f"{verb} {what}: {e.strerror or e} after {progress.bytes} "
                                  "bytes; the upload was rolled back to where it was before "
                                  "this command.", level=logging.WARNING)
                self.transferred(verb, what, "failed", progress.bytes,
                                 time.monotonic() - started)
                return
            kept = self._upload_failed(upload, what)
            kept = await self._settled(upload, kept)
            self.refuse(426, f"{verb} {what}: data connection or file failed "
                             f"({e.strerror or e}) after {progress.bytes} bytes{kept}.")
            self.transferred(verb, what, "failed", progress.bytes,
                             time.monotonic() - started)
            return
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if chan is not None:
                chan.abort()
            if sock is not None:
                sock.close()
            if fd is not None:
                os.close(fd)
            if upload is not None and not ok:
                self._upload_failed(upload, what)
        secs = time.monotonic() - started
        self.xfer = None
        self.transferred(verb, what, "ok", n, secs)
        self.event("%s %s: %d bytes in %.2f s%s", verb, what, n, secs, how)
        self.reply(226, f"Transfer complete ({n} bytes).")

    def control_gone(self) -> bool:
        """Whether the client has closed (or reset) the control connection, even if the
        loop has not told us yet: a peek at the socket."""
        t = self.transport
        if self.closing or t is None or t.is_closing():
            return True  # the loop has seen the end already
        raw = t.get_extra_info("socket")
        if raw is None:
            return False
        sock = socket.socket(self.family, socket.SOCK_STREAM, 0, raw.fileno())
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            sock.detach()

    def _upload_failed(self, upload: Upload | ObjectUpload | None, what: str, *,
                       full: bool = False) -> str:
        """End a failed upload: what arrived is kept (hidden) to be resumed, unless the
        disk is full or uploads.partial_max_age = 0, which roll it back. Returns a note
        for the reply ("" when nothing was kept)."""
        if upload is None or upload.done:
            return ""
        keep = not full and self.server.config.uploads.partial_max_age > 0
        if isinstance(upload, ObjectUpload):  # its whole parts, in the background
            return _KEPT if upload.discard(keep=keep) else ""
        if not upload.discard(keep=keep) or upload.temp is None:
            return ""
        base = what.rsplit("/", 1)[0]
        self.server.keep_partial(self.store().home, f"{base}/{upload.temp}")
        return _KEPT

    @staticmethod
    async def _settled(upload: Upload | ObjectUpload | None, kept: str) -> str:
        """An object upload being kept: wait until its marker is written, so that a
        resume sent after the 426 (on any node) finds it. The note, or "" when keeping
        failed after all."""
        if not kept or not isinstance(upload, ObjectUpload) or upload.settled is None:
            return kept
        try:
            return kept if await asyncio.shield(upload.settled) else ""
        except asyncio.CancelledError:
            # the session ended meanwhile: the keep goes on (the backend owns it), and
            # the refusal is still logged
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return kept
        except Exception:
            return ""

    def transferred(self, verb: str, what: str, result: str, nbytes: int,
                    seconds: float) -> None:
        """A transfer ended: count it, and write its xferlog line (files only)."""
        direction = _DIRECTION[verb]
        self.server.stats.transfer(direction, result, nbytes, seconds)
        xferlog = self.server.xferlog
        if xferlog is not None and direction != "listing":
            home = self.storage.home.rstrip("/") if self.storage is not None else ""
            xferlog.write(seconds, str(self.client_ip), nbytes, home + what, self.binary,
                          direction == "upload", self.login_name, result == "ok")

    # -- helpers for handlers --------------------------------------------------------

    def store(self) -> LocalStorage:
        assert isinstance(self.storage, LocalStorage)
        return self.storage

    def storage_error(self, verb: str, e: StorageError) -> None:
        level = (logging.WARNING if e.__class__.__name__ == "Escape" or e.code in (452, 552)
                 else logging.INFO)
        if e.__class__.__name__ == "Escape":
            self.server.stats.refused("path_escape")
        self.refuse(e.code, f"{verb} refused: {e}.", level=level)


#: an upload at least this large is committed in a worker thread: renaming a new file over
#: an existing one makes ext4 (auto_da_alloc, its default) allocate and start writing the
#: new file's delayed blocks inside rename(), ~0.3 s per 512 MiB measured here, which on
#: the loop would stall every other session; a small upload's rename costs less than the
#: thread hop
COMMIT_IN_THREAD = 4 << 20


async def _commit_in_thread(upload: Upload) -> None:
    """``upload.commit()`` off the event loop. A cancellation (ABOR, server stop) while it
    runs waits for it to end, so that nothing discards an upload being renamed into place,
    then goes on as a cancellation."""
    fut = asyncio.get_running_loop().run_in_executor(None, upload.commit)
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        await asyncio.wait([fut])
        raise
