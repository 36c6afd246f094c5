"""Directory listings (LIST, NLST, MLSD, STAT with a path) streamed in chunks, read off
the event loop (issue 21).

A listing of a directory with 100,000 entries used to be built whole on the loop (~3 s
of ``stat`` and formatting, during which no other session was served) and sent whole
(155 MiB of RSS for twenty of them waiting to be read). Now a :class:`Listing` is read
``CHUNK`` entries at a time in a worker thread (``Server.list_pool()``), and each chunk
is sent before the next is read: over a data connection at the pace the client reads
it (the socket's own back-pressure), on the control connection (STAT) after the
session's unread replies fall below their high-water mark (``Session.drained``). At
most one chunk per listing is in memory, and the loop only ever sends.

The first chunk is read before anything is sent, so a missing or refused path is still a
550 before any 150 or 213. The storage's ``listdir`` is an iterator of
:class:`~natftp.proto.listing.FileFacts`; only one thread advances a listing at a time.

Object storage (:class:`ObjectListing`) is the same, with a coroutine instead of a
thread: ListObjectsV2 pages (up to 1,000 keys) are asked for only when the lines of the
one before have been sent, so a client that reads slowly holds the service's listing
back too, and at most a page and a chunk are in memory.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import islice

from natftp.proto import listing
from natftp.proto.listing import FileFacts
from natftp.storage.local import LocalStorage, StorageError
from natftp.storage.s3 import S3Storage

#: entries read, stat'ed and formatted per turn of a worker thread (~ a few ms)
CHUNK = 512


class Listing:
    """The lines of one listing, made ``CHUNK`` at a time by :meth:`chunk` (which runs
    in a worker thread and raises ``StorageError`` on the first call for a bad path)."""

    __slots__ = ("store", "vpath", "line", "file_line", "indent", "_it", "lines")

    def __init__(self, store: LocalStorage, vpath: str, line: Callable[[FileFacts], str],
                 *, indent: bool = False, file_line: Callable[[FileFacts], str] | None = None
                 ) -> None:
        self.store, self.vpath, self.line = store, vpath, line
        #: lines of a multi-line reply (STAT): a leading space, CR/LF made spaces
        self.indent = indent
        self._it: Iterator[FileFacts] | None = None
        #: lines made so far
        self.lines = 0
        #: the line of a path that is a file, not a directory (NLST: the path as given)
        self.file_line = file_line or line

    def _open(self) -> Iterator[FileFacts]:
        st = self.store
        if st.is_dir(self.vpath):
            return st.listdir(self.vpath)
        # a file: its own line (facts() raises for a missing or refused path)
        f = st.facts(self.vpath)
        self.line = self.file_line
        return iter((f,))

    def chunk(self) -> bytes:
        """The next lines, CRLF-terminated and encoded; b"" at the end."""
        if self._it is None:
            self._it = self._open()
        fmt = self.line
        lines = [fmt(f) for f in islice(self._it, CHUNK)]
        if not lines:
            return b""
        self.lines += len(lines)
        return encode(lines, self.indent)


def encode(lines: list[str], indent: bool) -> bytes:
    """Lines as sent: CRLF-terminated; in a multi-line reply (``indent``) with a leading
    space and CR/LF made spaces."""
    if indent:
        text = "".join(" " + ln.replace("\r", " ").replace("\n", " ") + "\r\n"
                       for ln in lines)
    else:
        text = "".join(ln + "\r\n" for ln in lines)
    return text.encode("utf-8", "surrogateescape")


class ObjectListing:
    """:class:`Listing` for object storage: :meth:`chunk` is a coroutine that asks the
    service for the next page only when the lines it has are sent. ``dirs_only``
    (MLSD): a file is refused (501) instead of listed."""

    __slots__ = ("store", "vpath", "line", "file_line", "indent", "dirs_only", "_pages",
                 "_facts", "lines")

    def __init__(self, store: S3Storage, vpath: str, line: Callable[[FileFacts], str],
                 *, indent: bool = False, file_line: Callable[[FileFacts], str] | None = None,
                 dirs_only: bool = False) -> None:
        self.store, self.vpath, self.line = store, vpath, line
        self.indent, self.dirs_only = indent, dirs_only
        self.file_line = file_line or line
        self._pages: AsyncIterator[list[FileFacts]] | None = None
        #: entries of the page being sent
        self._facts: list[FileFacts] = []
        self.lines = 0

    async def _open(self) -> AsyncIterator[list[FileFacts]]:
        st = self.store
        if await st.is_dir(self.vpath):
            return st.listdir(self.vpath)
        f = await st.facts(self.vpath)  # 550 for a missing name
        if self.dirs_only:
            raise StorageError(f"{self.vpath} is not a directory (use MLST for a file)", 501)
        self.line = self.file_line

        async def one() -> AsyncIterator[list[FileFacts]]:
            yield [f]
        return one()

    async def chunk(self) -> bytes:
        """The next lines, CRLF-terminated and encoded; b"" at the end."""
        if self._pages is None:
            self._pages = await self._open()
        while len(self._facts) < CHUNK:
            page = await anext(self._pages, None)
            if page is None:
                break
            self._facts += page
        batch, self._facts = self._facts[:CHUNK], self._facts[CHUNK:]
        if not batch:
            return b""
        fmt = self.line
        self.lines += len(batch)
        return encode([fmt(f) for f in batch], self.indent)

    async def aclose(self) -> None:
        """Stop the service's listing (a transfer that ended early)."""
        pages, self._pages = self._pages, None
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()


def long_line() -> Callable[[FileFacts], str]:
    """``ls -l`` lines (LIST, STAT), dated against one "now" for the whole listing."""
    now = time.time()
    return lambda f: listing.ls_line(f, now)


def name_line(target: str) -> Callable[[FileFacts], str]:
    """NLST lines: the names, prefixed with the directory as the client wrote it."""
    prefix = "" if target in ("", ".") else target.rstrip("/") + "/"
    return lambda f: prefix + f.name
