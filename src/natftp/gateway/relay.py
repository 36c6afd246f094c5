"""Data relays between two connected sockets, with backpressure and an idle timeout.

* :func:`splice_relay` (Linux, plain TCP on both sides): bytes go socket -> pipe ->
  socket inside the kernel with ``os.splice``, driven by the event loop's readiness
  callbacks. At most one pipe's worth (``PIPE_SIZE``) is in flight per direction; a slow
  reader stops us reading from the fast side, so TCP flow control pushes back.
* :func:`stream_relay` (TLS on either side, or no splice): asyncio streams, one bounded
  chunk at a time, each write waiting for ``drain`` before the next read.

Both return when each direction has seen end-of-file and passed it on (or a grace time
after the first did); ``delivered`` is set as soon as one direction finished, which is
the moment the FTP transfer is over (data flows one way).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

PIPE_SIZE = 1 << 20
#: bytes one splice call takes from the socket (see _splice_one)
SPLICE_CHUNK = 1 << 16
#: a relay that keeps moving yields to the other sessions at least this often
YIELD_EVERY = 4 << 20
CHUNK = 1 << 16
#: after one direction ended, how long the other may take to end by itself
GRACE = 5.0

_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
HAVE_SPLICE = hasattr(os, "splice")


class RelayTimeout(TimeoutError):
    """No byte moved in either direction for the idle timeout."""


@dataclass
class RelayStats:
    """Bytes per direction; ``a`` and ``b`` are the two sides as passed in."""

    a_to_b: int = 0
    b_to_a: int = 0
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    method: str = ""

    @property
    def total(self) -> int:
        return self.a_to_b + self.b_to_a

    def touch(self) -> None:
        self.last = time.monotonic()


async def _idle_wait(fut: asyncio.Future[Any], stats: RelayStats, idle: float) -> None:
    """Await fut; on timeout give up only if *neither* direction moved for ``idle``."""
    while True:
        remaining = idle - (time.monotonic() - stats.last)
        if remaining <= 0:
            raise RelayTimeout(f"no data moved for {idle:g} s")
        try:
            await asyncio.wait_for(asyncio.shield(fut), remaining)
            return
        except TimeoutError:
            continue


async def _wait_fds(rfd: int | None, wfd: int | None, stats: RelayStats, idle: float) -> None:
    """Until ``rfd`` is readable or ``wfd`` writable; RelayTimeout once neither direction
    (``stats`` is shared) moved for ``idle``. One future and one timer per wait (a relay
    waits thousands of times a second: ``wait_for`` around a shield cost ~10% of the
    gateway's core in a 1 GiB transfer)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    def expire() -> None:
        nonlocal timer
        if fut.done():
            return
        left = idle - (time.monotonic() - stats.last)
        if left <= 0:
            fut.set_exception(RelayTimeout(f"no data moved for {idle:g} s"))
        else:
            timer = loop.call_later(left, expire)

    left = idle - (time.monotonic() - stats.last)
    if left <= 0:
        raise RelayTimeout(f"no data moved for {idle:g} s")
    timer = loop.call_later(left, expire)
    if rfd is not None:
        loop.add_reader(rfd, ready)
    if wfd is not None:
        loop.add_writer(wfd, ready)
    try:
        await fut
    finally:
        timer.cancel()
        if rfd is not None:
            loop.remove_reader(rfd)
        if wfd is not None:
            loop.remove_writer(wfd)
        fut.cancel()


def _pipe() -> tuple[int, int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    size = 1 << 16
    with contextlib.suppress(OSError, AttributeError):
        size = fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return r, w, size


async def _splice_one(src: socket.socket, dst: socket.socket, stats: RelayStats,
                      forward: bool, idle: float) -> None:
    """One direction: socket -> pipe -> socket, ``SPLICE_CHUNK`` at a time, in turn.

    Small pieces in turn, not the pipe filled and then emptied: on loopback (and on any
    box where both peers are local) the bytes a piece carries are still in the cache
    when the receiver copies them out. Filling 1 MiB before passing it on made the
    server behind the gateway spend twice the core per byte of a direct STOR. The pipe
    stays large (``PIPE_SIZE``) to hold what a slow receiver has not taken yet."""
    pr, pw, cap = _pipe()
    sfd, dfd = src.fileno(), dst.fileno()
    pending = 0
    eof = False
    since_yield = 0
    try:
        while True:
            moved = 0
            if not eof and pending < cap:
                try:
                    n = os.splice(sfd, pw, min(SPLICE_CHUNK, cap - pending),
                                  flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    pass
                else:
                    eof = n == 0
                    pending += n
                    moved += n
            if pending:
                try:
                    m = os.splice(pr, dfd, pending, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    pass
                else:
                    pending -= m
                    moved += m
                    if forward:
                        stats.a_to_b += m
                    else:
                        stats.b_to_a += m
            if eof and not pending:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            if moved:
                since_yield += moved
                if since_yield >= YIELD_EVERY:  # let other sessions run
                    since_yield = 0
                    stats.touch()
                    await asyncio.sleep(0)
                continue
            stats.touch()
            since_yield = 0
            await _wait_fds(sfd if not eof and pending < cap else None,
                            dfd if pending else None, stats, idle)
    finally:
        os.close(pr)
        os.close(pw)


async def _both(one: asyncio.Task[None], two: asyncio.Task[None],
                delivered: asyncio.Event) -> None:
    """Wait for the first direction, signal delivery, give the other a grace time."""
    try:
        done, _ = await asyncio.wait({one, two}, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()  # a failed direction fails the relay
        delivered.set()
        rest = {one, two} - done
        if rest:
            done2, _ = await asyncio.wait(rest, timeout=GRACE)
            for t in done2:
                with contextlib.suppress(OSError):
                    t.result()
    finally:
        for t in (one, two):
            t.cancel()
        for t in (one, two):
            with contextlib.suppress(BaseException):
                await t


async def splice_relay(a: socket.socket, b: socket.socket, *, idle: float,
                       delivered: asyncio.Event, stats: RelayStats) -> RelayStats:
    """Relay between two plain non-blocking TCP sockets with os.splice (Linux)."""
    stats.method = "splice"
    one = asyncio.ensure_future(_splice_one(a, b, stats, True, idle))
    two = asyncio.ensure_future(_splice_one(b, a, stats, False, idle))
    await _both(one, two, delivered)
    return stats


async def _copy_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    stats: RelayStats, forward: bool, idle: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        rd = loop.create_task(reader.read(CHUNK))
        try:
            await _idle_wait(rd, stats, idle)
        finally:
            if not rd.done():
                rd.cancel()
        data = rd.result()
        if not data:
            break
        writer.write(data)
        dr = loop.create_task(writer.drain())
        try:
            await _idle_wait(dr, stats, idle)
        finally:
            if not dr.done():
                dr.cancel()
        dr.result()
        if forward:
            stats.a_to_b += len(data)
        else:
            stats.b_to_a += len(data)
        stats.touch()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()
    else:  # TLS cannot half-close: close_notify ends this connection
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), GRACE)


async def stream_relay(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                       b: tuple[asyncio.StreamReader, asyncio.StreamWriter], *, idle: float,
                       delivered: asyncio.Event, stats: RelayStats) -> RelayStats:
    """Relay between two asyncio streams (TLS or plain) with a bounded buffer."""
    stats.method = stats.method or "copy"
    one = asyncio.ensure_future(_copy_one(a[0], b[1], stats, True, idle))
    two = asyncio.ensure_future(_copy_one(b[0], a[1], stats, False, idle))
    await _both(one, two, delivered)
    return stats
