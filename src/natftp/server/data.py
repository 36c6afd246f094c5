"""Data connections and the bytes that move over them.

Everything here works on plain non-blocking sockets driven by the event loop, because
that is what both asyncio and uvloop support fully: uvloop 0.23 raises
``NotImplementedError`` for ``loop.sendfile``/``loop.sock_sendfile``, so RETR calls
``os.sendfile`` itself and waits for writability with ``loop.add_writer`` when the socket
buffer is full. STOR receives with ``sock_recv_into`` into one large reused buffer.

A passive listener is callback-driven (``add_reader`` plus one timer), not a task: a
session holding a PASV port costs a socket and a timer handle, nothing more.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket

from natftp.nat.ports import PortPool
from natftp.proto.addr import IPAddress, ip

log = logging.getLogger("natftp.server")

RECV_BUFFER = 1 << 20
SENDFILE_CHUNK = 1 << 30
ASCII_CHUNK = 1 << 18
#: yield to other sessions at least this often while one transfer keeps succeeding
YIELD_EVERY = 64 << 20


class DataError(Exception):
    """A data connection that could not be made; ``str(e)`` is fit for a 425 reply."""


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


async def send_file(loop: asyncio.AbstractEventLoop, sock: socket.socket, fd: int,
                    offset: int, progress: Progress) -> int:
    """Zero-copy ``fd`` from ``offset`` to its end over ``sock`` (kernel sendfile)."""
    out = sock.fileno()
    sent = 0
    since_yield = 0
    while True:
        try:
            n = os.sendfile(out, fd, offset, SENDFILE_CHUNK)
        except (BlockingIOError, InterruptedError):
            since_yield = 0
            await wait_writable(loop, out)
            continue
        if n == 0:
            return sent
        offset += n
        sent += n
        progress.bytes += n
        since_yield += n
        if since_yield >= YIELD_EVERY:
            since_yield = 0
            await asyncio.sleep(0)


async def send_ascii(loop: asyncio.AbstractEventLoop, sock: socket.socket, fd: int,
                     offset: int, progress: Progress) -> int:
    """TYPE A download: LF -> CRLF (the file is Unix text), streamed in chunks."""
    sent = 0
    while True:
        chunk = os.pread(fd, ASCII_CHUNK, offset)
        if not chunk:
            return sent
        offset += len(chunk)
        data = chunk.replace(b"\n", b"\r\n")
        await loop.sock_sendall(sock, data)
        sent += len(data)
        progress.bytes += len(data)


async def send_bytes(loop: asyncio.AbstractEventLoop, sock: socket.socket, data: bytes,
                     progress: Progress) -> int:
    await loop.sock_sendall(sock, data)
    progress.bytes += len(data)
    return len(data)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


async def recv_to_file(loop: asyncio.AbstractEventLoop, sock: socket.socket, fd: int,
                       progress: Progress) -> int:
    """Binary upload: socket -> file until the client closes, one reused 1 MiB buffer."""
    buf = bytearray(RECV_BUFFER)
    view = memoryview(buf)
    got = 0
    while True:
        n = await loop.sock_recv_into(sock, buf)
        if n == 0:
            return got
        _write_all(fd, view[:n])
        got += n
        progress.bytes += n


async def recv_ascii_to_file(loop: asyncio.AbstractEventLoop, sock: socket.socket, fd: int,
                             progress: Progress) -> int:
    """TYPE A upload: CRLF -> LF, a CR split across two reads handled."""
    buf = bytearray(ASCII_CHUNK)
    got = 0
    pending_cr = False
    while True:
        n = await loop.sock_recv_into(sock, buf)
        if n == 0:
            if pending_cr:
                _write_all(fd, memoryview(b"\r"))
            return got
        got += n
        progress.bytes += n
        data = bytes(buf[:n])
        if pending_cr:
            data = b"\r" + data
            pending_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            pending_cr = True
        _write_all(fd, memoryview(data.replace(b"\r\n", b"\n")))


class PassiveListener:
    """One PASV/EPSV port: accepts the first connection from the control peer.

    Connections from any other address are closed and logged (RFC 2577 port stealing).
    If none comes within ``timeout`` the port is given back. ``wait()`` returns the data
    socket or raises :class:`DataError`.
    """

    __slots__ = ("loop", "sock", "port", "pool", "peer", "timeout", "sid", "_fut",
                 "_timer", "_error", "_open", "_taken")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, port: int,
                 pool: PortPool, peer: IPAddress, timeout: float, sid: str) -> None:
        self.loop, self.sock, self.port, self.pool = loop, sock, port, pool
        self.peer, self.timeout, self.sid = peer, timeout, sid
        self._fut: asyncio.Future[socket.socket | None] = loop.create_future()
        self._error = ""
        self._open = True
        self._taken = False
        loop.add_reader(sock.fileno(), self._on_readable)
        self._timer: asyncio.TimerHandle | None = loop.call_later(timeout, self._on_timeout)

    def _on_readable(self) -> None:
        try:
            conn, addr = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._finish(None, f"accepting on port {self.port} failed: {e.strerror}")
            return
        if ip(str(addr[0])) != self.peer:
            log.warning("[%s] data connection to port %d from %s refused: not the control "
                        "connection's address %s (port stealing protection)", self.sid,
                        self.port, addr[0], self.peer)
            conn.close()
            return
        conn.setblocking(False)
        self._finish(conn, "")

    def _on_timeout(self) -> None:
        self._timer = None
        self._finish(None, f"no data connection came to port {self.port} within "
                           f"{self.timeout:g} s (timeouts.data)")

    def _finish(self, conn: socket.socket | None, error: str) -> None:
        if self._open:
            self._open = False
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.pool.release(self.port)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._fut.done():
            if conn is not None:
                conn.close()
            return
        self._error = error
        self._fut.set_result(conn)

    async def wait(self) -> socket.socket:
        conn = await self._fut
        self._taken = True
        if conn is None:
            raise DataError(self._error)
        return conn

    def close(self) -> None:
        """Give the port back and drop any connection not yet used."""
        self._finish(None, "data connection closed")
        if self._fut.done() and not self._fut.cancelled():
            conn = self._fut.result()
            if conn is not None and not self._taken:
                conn.close()


def bind_passive(family: int, local: tuple[object, ...], pool: PortPool,
                 ) -> tuple[socket.socket, int] | None:
    """Bind a listening socket on the control connection's local address, on a free port
    of the pool; None when every port of the range is busy."""
    for port in pool.candidates():
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.bind((local[0], port, 0, local[3] if len(local) > 3 else 0))
            else:
                s.bind((local[0], port))
            s.listen(1)
            s.setblocking(False)
        except OSError as e:
            s.close()
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        real = s.getsockname()[1]
        pool.take(real)
        return s, real
    return None


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

