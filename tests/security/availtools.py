"""Helpers for the availability tests (issue 21 items 4-8 and 13): an in-process server
on its own event loop thread (to look at its counters and sessions), the server's RSS,
and a log poll with a generous bound."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from natftp.server.app import Server
from natftp.server.config import User, from_dict

T = TypeVar("T")


class InProcess:
    """A natftp Server running on a loop (uvloop by default) in a thread of the test."""

    def __init__(self, srv: Server, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.srv, self.loop, self.port = srv, loop, port

    def call(self, fn: Callable[[], T], timeout: float = 30) -> T:
        """Run ``fn`` on the server's loop and return its result."""
        fut: Future[T] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the test thread
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)


@contextmanager
def in_process(root: Path, config: dict[str, Any] | None = None, *, loop: str = "uvloop",
               user: tuple[str, str] = ("alice", "pw")) -> Iterator[InProcess]:
    cfg = from_dict({"root": str(root), "listen": ["127.0.0.1:0"], **(config or {})})
    cfg = dataclasses.replace(cfg, users=(User(name=user[0], home=cfg.root,
                                               password=user[1]),))
    ready: Future[InProcess] = Future()
    stop = threading.Event()

    async def main() -> None:
        srv = Server(cfg)
        bound = await srv.start()
        ready.set_result(InProcess(srv, asyncio.get_running_loop(), bound[0].port))
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await srv.stop()

    def thread() -> None:
        factory = None
        if loop == "uvloop":
            import uvloop
            factory = uvloop.new_event_loop
        try:
            with asyncio.Runner(loop_factory=factory) as r:
                r.run(main())
        except BaseException as e:  # noqa: BLE001
            if not ready.done():
                ready.set_exception(e)
            raise

    t = threading.Thread(target=thread, daemon=True)
    t.start()
    try:
        yield ready.result(20)
    finally:
        stop.set()
        t.join(20)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no VmRSS for {pid}")


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``cond`` until true; fail naming ``what`` after ``timeout`` (a bound for a
    loaded machine, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.02)
