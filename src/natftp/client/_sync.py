"""The blocking twin of :class:`Client`: same methods, same results, no duplicated logic.

Each BlockingClient owns a private event loop in a daemon thread and runs the async
client's coroutines there, so it works from plain scripts and from code that already
runs an event loop of its own. Progress callbacks and file objects are used from that
thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from datetime import datetime
from typing import Any, TypeVar

from natftp.client._async import Client, ProgressCallback, Sink, Source
from natftp.client.mirror import Action, MirrorResult
from natftp.proto.listparse import Entry
from natftp.proto.replies import Reply

T = TypeVar("T")
EntryList = list[Entry]
StrList = list[str]
WalkItem = tuple[str, list[Entry], list[Entry]]


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="natftp-client",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class BlockingClient:
    """``with BlockingClient(url) as ftp: ftp.download(...)``; see :class:`Client` for the
    options, which are the same."""

    def __init__(self, url: str | None = None, **options: Any) -> None:
        self._aio = Client(url, **options)
        self._portal = _LoopThread()

    @property
    def aio(self) -> Client:
        """The async client underneath (its attributes: features, data_strategy, ...)."""
        return self._aio

    def __getattr__(self, name: str) -> Any:
        # plain attributes (host, features, data_strategy, last_data_address, welcome...)
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._aio, name)
        if callable(value):
            raise AttributeError(name)
        return value

    def __enter__(self) -> BlockingClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        portal = getattr(self, "_portal", None)
        if portal is not None and portal.loop.is_running():
            portal.loop.call_soon_threadsafe(portal.loop.stop)

    def connect(self) -> None:
        self._portal.run(self._aio.connect())

    def close(self) -> None:
        try:
            self._portal.run(self._aio.close())
        finally:
            self._portal.stop()

    def command(self, name: str, arg: str = "") -> Reply:
        return self._portal.run(self._aio.command(name, arg))

    def pwd(self) -> str:
        return self._portal.run(self._aio.pwd())

    def cwd(self, path: str) -> None:
        self._portal.run(self._aio.cwd(path))

    def list(self, path: str = "") -> EntryList:
        return self._portal.run(self._aio.list(path))

    def names(self, path: str = "") -> StrList:
        return self._portal.run(self._aio.names(path))

    def stat(self, path: str) -> Entry:
        return self._portal.run(self._aio.stat(path))

    def exists(self, path: str) -> bool:
        return self._portal.run(self._aio.exists(path))

    def size(self, path: str) -> int:
        return self._portal.run(self._aio.size(path))

    def mtime(self, path: str) -> datetime | None:
        return self._portal.run(self._aio.mtime(path))

    def set_mtime(self, path: str, when: datetime) -> bool:
        return self._portal.run(self._aio.set_mtime(path, when))

    def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        self._portal.run(self._aio.mkdir(path, parents=parents, exist_ok=exist_ok))

    def rmdir(self, path: str) -> None:
        self._portal.run(self._aio.rmdir(path))

    def remove(self, path: str) -> None:
        self._portal.run(self._aio.remove(path))

    def rename(self, src: str, dst: str) -> None:
        self._portal.run(self._aio.rename(src, dst))

    def walk(self, top: str = "") -> Iterator[WalkItem]:
        agen: AsyncIterator[WalkItem] = self._aio.walk(top)
        while True:
            try:
                item: WalkItem = self._portal.run(agen.__anext__())  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
            yield item

    def download(self, remote: str, dest: Sink, *, resume: bool = False,
                 progress: ProgressCallback | None = None) -> int:
        return self._portal.run(self._aio.download(remote, dest, resume=resume,
                                                   progress=progress))

    def read_bytes(self, remote: str) -> bytes:
        return self._portal.run(self._aio.read_bytes(remote))

    def upload(self, source: Source, remote: str, *, resume: bool = False,
               progress: ProgressCallback | None = None) -> int:
        return self._portal.run(self._aio.upload(source, remote, resume=resume,
                                                 progress=progress))

    def mirror_down(self, remote: str, local: str | os.PathLike[str], *, delete: bool = False,
                    dry_run: bool = False,
                    on_action: Any = None) -> MirrorResult:
        return self._portal.run(self._aio.mirror_down(remote, local, delete=delete,
                                                      dry_run=dry_run, on_action=on_action))

    def mirror_up(self, local: str | os.PathLike[str], remote: str, *, delete: bool = False,
                  dry_run: bool = False, on_action: Any = None) -> MirrorResult:
        return self._portal.run(self._aio.mirror_up(local, remote, delete=delete,
                                                    dry_run=dry_run, on_action=on_action))


SyncClient = BlockingClient

__all__ = ["Action", "BlockingClient", "SyncClient"]
