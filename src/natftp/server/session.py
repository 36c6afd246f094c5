"""One control connection: an ``asyncio.Protocol`` feeding the sans-IO line reader.

An idle session is this object, a :class:`LineReader` and one timer handle: no task, no
stream pair. Work that waits (a transfer, the delay after a failed login, a password
hash check) runs as the session's single *busy* task; commands that arrive meanwhile are
queued and handled in order when it ends, except ABOR, which acts at once.

Behaviour per command lives in :mod:`natftp.server.handlers`, the table that maps names
to handlers in :mod:`natftp.server.commands`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from natftp.proto.addr import IPAddress, ip
from natftp.proto.commands import BadLine, Command, LineReader
from natftp.proto.listing import MLST_FACTS
from natftp.proto.replies import Reply
from natftp.server import data
from natftp.server.config import Permissions, User
from natftp.storage.local import LocalStorage, StorageError, Upload

if TYPE_CHECKING:
    from natftp.server.app import Server

log = logging.getLogger("natftp.server")

#: commands queued while busy before the session stops reading from the client
MAX_QUEUED = 64

_PERM_NOUN = {"list": "Listing", "read": "Downloads", "write": "Writes",
              "delete": "Deletes", "rename": "Renames", "mkdir": "Creating directories"}


class Session(asyncio.Protocol):
    __slots__ = (
        "server", "loop", "transport", "sid", "peer", "peer_port", "local", "family",
        "reader", "user", "login_name", "storage", "perms", "perm_source", "cwd", "binary",
        "rest", "rnfr", "pending_user", "failures", "epsv_all", "pasv", "port_target",
        "busy", "queue", "abor_pending", "abort_reason", "last_active", "idle_handle",
        "closing", "mlst_facts", "paused", "started", "counted",
    )

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.sid = server.next_sid()
        self.peer: IPAddress = ip("0.0.0.0")
        self.peer_port = 0
        self.local: tuple[Any, ...] = ("0.0.0.0", 0)
        self.family = socket.AF_INET
        self.reader = LineReader(server.config.limits.max_line)
        self.user: User | None = None
        self.login_name = ""
        self.storage: LocalStorage | None = None
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
        self.paused = False
        self.started = time.monotonic()
        self.counted = False

    # -- connection ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but quack alike
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        peername = transport.get_extra_info("peername")
        self.local = tuple(transport.get_extra_info("sockname"))
        self.peer = ip(str(peername[0]))
        self.peer_port = int(peername[1])
        if sock is not None:
            self.family = sock.family
            # each reply must start its own TCP segment: the kernel's FTP helper only
            # parses a 227 at the start of one
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # ABOR sent with MSG_OOB must stay in the stream, or its last byte is lost
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        refusal = self.server.admit(self)
        if refusal is not None:
            log.warning("[%s] connection from %s refused: %s", self.sid, self.peer, refusal)
            self.reply(421, refusal)
            self.close()
            return
        self.counted = True
        log.info("[%s] connection from %s port %d", self.sid, self.peer, self.peer_port)
        self.reply(220, self.server.config.banner)
        self.last_active = self.loop.time()
        self._arm_idle(self.server.config.timeouts.idle)

    def data_received(self, chunk: bytes) -> None:
        self.last_active = self.loop.time()
        for ev in self.reader.feed(chunk):
            if self.closing:
                return
            if self.busy is not None:
                if isinstance(ev, Command) and ev.name == "ABOR":
                    self.abort("aborted by ABOR")
                    self.abor_pending = True
                    continue
                if self.queue is None:
                    self.queue = deque()
                self.queue.append(ev)
                if len(self.queue) >= MAX_QUEUED and self.transport and not self.paused:
                    self.paused = True
                    self.transport.pause_reading()
                continue
            self.handle(ev)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        self.close_data()
        if self.busy is not None:
            self.abort_reason = self.abort_reason or "control connection closed"
            self.busy.cancel()
        if self.counted:
            self.counted = False
            self.server.release(self)
            log.info("[%s] closed (%s)", self.sid, self.login_name or "not logged in")
        self.transport = None

    def close(self) -> None:
        """Close after the replies already written have gone out."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def shutdown(self, why: str) -> None:
        """Server stop: abort a transfer (its cleanup runs), say 421, close."""
        if self.busy is not None:
            self.abort(why)
        self.reply(421, f"Server shutting down ({why}); closing the connection.")
        self.close()

    # -- replies and logging ---------------------------------------------------------

    def reply(self, code: int, *lines: str) -> None:
        """One reply, in its own write (so it starts a TCP segment: TCP_NODELAY)."""
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(Reply.of(code, *lines).format())

    def send_reply(self, reply: Reply) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(reply.format())

    def refuse(self, code: int, text: str, *, level: int = logging.INFO) -> None:
        """A refusal: the reply says what and why, and the event is logged once."""
        log.log(level, "[%s] %s %s: refused %d %s", self.sid, self.peer,
                self.login_name or "-", code, text)
        self.reply(code, text)

    def event(self, text: str, *args: object, level: int = logging.INFO) -> None:
        log.log(level, "[%s] " + text, self.sid, *args)

    # -- dispatch --------------------------------------------------------------------

    def handle(self, ev: Command | BadLine) -> None:
        from natftp.server.commands import NOT_IMPLEMENTED, TABLE

        if isinstance(ev, BadLine):
            self.refuse(ev.code, ev.reason)
            return
        log.debug("[%s] <- %s", self.sid, ev.masked())
        spec = TABLE.get(ev.name)
        if spec is None:
            if ev.name in NOT_IMPLEMENTED:
                self.refuse(502, f"{ev.name} is not implemented by this server "
                                 f"({NOT_IMPLEMENTED[ev.name]}).")
            else:
                self.refuse(500, f"Unknown command {ev.name!r}; HELP lists the commands.")
            return
        if ev.name != "RNTO":
            rnfr_kept = ev.name == "RNFR"
            if not rnfr_kept:
                self.rnfr = None
        if spec.login and self.user is None:
            self.refuse(530, f"Please log in with USER and PASS before {ev.name}.")
            return
        if spec.arg and not ev.arg.strip():
            self.refuse(501, f"{ev.name} needs an argument: {spec.arg}.")
            return
        if spec.perm is not None and not getattr(self.perms, spec.perm):
            self.deny(spec.perm)
            return
        try:
            result = spec.handler(self, ev.arg)
        except Exception:
            log.exception("[%s] %s failed", self.sid, ev.name)
            self.reply(451, f"{ev.name} failed: internal server error (logged).")
            return
        if result is not None:
            self.run_busy(result)

    def deny(self, perm: str) -> None:
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
        if self.abor_pending:
            self.abor_pending = False
            self.reply(226, "ABOR command successful; the transfer was aborted.")
        if self.closing:
            return
        self.last_active = self.loop.time()
        while self.queue and self.busy is None and not self.closing:
            self.handle(self.queue.popleft())
        if self.paused and self.busy is None and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def abort(self, why: str) -> None:
        """Cancel the busy task (a transfer); it replies 426 and cleans up."""
        if self.busy is not None:
            self.abort_reason = self.abort_reason or why
            self.busy.cancel()

    # -- timers ----------------------------------------------------------------------

    def _arm_idle(self, delay: float) -> None:
        self.idle_handle = self.loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self.idle_handle = None
        if self.closing:
            return
        idle = self.server.config.timeouts.idle
        if self.busy is not None:
            self._arm_idle(idle)
            return
        left = self.last_active + idle - self.loop.time()
        if left > 0.05:
            self._arm_idle(left)
            return
        self.refuse(421, f"Idle for {idle:g} s (timeouts.idle); closing the connection.")
        self.close()

    # -- data connections ------------------------------------------------------------

    def close_data(self) -> None:
        if self.pasv is not None:
            self.pasv.close()
            self.pasv = None
        self.port_target = None

    def has_data_setup(self) -> bool:
        return self.pasv is not None or self.port_target is not None

    async def open_data(self) -> socket.socket:
        if self.pasv is not None:
            listener, self.pasv = self.pasv, None
            try:
                return await listener.wait()
            finally:
                listener.close()
        if self.port_target is not None:
            target, self.port_target = self.port_target, None
            cfg = self.server.config
            return await data.connect_active(self.loop, self.family, self.local[0],
                                             cfg.active.source_port, target,
                                             cfg.timeouts.data)
        raise data.DataError("no data connection set up; send PASV, EPSV, PORT or EPRT "
                             "first")

    async def transfer(self, verb: str, what: str, mark: str,
                       body: Callable[[socket.socket, data.Progress], Awaitable[int]],
                       upload: Upload | None = None, fd: int | None = None) -> None:
        """Open the data connection, say 150, run ``body``, say 226 or why not.

        Every exit path closes the socket and the file, and discards an unfinished
        upload (its temporary file; the file it would have replaced stays).
        """
        progress = data.Progress()
        watchdog: asyncio.TimerHandle | None = None
        sock: socket.socket | None = None
        ok = False
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
            sock = await self.open_data()
            self.reply(150, mark)
            watch()
            n = await body(sock, progress)
            if upload is not None:
                upload.commit()
            ok = True
        except data.DataError as e:
            self.refuse(425, f"Cannot open data connection: {e}.")
            return
        except asyncio.CancelledError:
            why = self.abort_reason or "cancelled"
            self.refuse(426, f"{verb} {what}: transfer aborted ({why}) after "
                             f"{progress.bytes} bytes.")
            if self.closing or (why != "aborted by ABOR" and "timeouts.data" not in why):
                raise
            return
        except OSError as e:
            self.refuse(426, f"{verb} {what}: data connection or file failed "
                             f"({e.strerror or e}) after {progress.bytes} bytes.")
            return
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if sock is not None:
                sock.close()
            if fd is not None:
                os.close(fd)
            if upload is not None and not ok:
                upload.discard()
        secs = time.monotonic() - started
        self.event("%s %s: %d bytes in %.2f s", verb, what, n, secs)
        self.reply(226, f"Transfer complete ({n} bytes).")

    # -- helpers for handlers --------------------------------------------------------

    def store(self) -> LocalStorage:
        assert self.storage is not None
        return self.storage

    def storage_error(self, verb: str, e: StorageError) -> None:
        level = logging.WARNING if e.__class__.__name__ == "Escape" else logging.INFO
        self.refuse(550, f"{verb} refused: {e}.", level=level)
