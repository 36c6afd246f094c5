"""The commands that touch files, for a session whose home is in object storage.

The local backend's handlers (:mod:`natftp.server.handlers`) call a synchronous
``LocalStorage`` and keep their fast paths (sendfile, the RETR answered within the
callback). An object store answers over the network, so here every such command is a
coroutine: the session runs it as its busy task and queues what comes meanwhile, exactly
as it does for a transfer. Preconditions (login, argument, permission) are checked by the
session from the command table before either handler runs; refusals reuse the same
wording. :data:`HANDLERS` maps a command name to its object-storage handler; the server
loads it when its storage is a bucket (``Server.object_handlers``), and a session whose
storage is an :class:`S3Storage` uses it instead of the table's handler.
LIST, NLST and STAT keep the table's handlers: they stream an
:class:`~natftp.server.listings.ObjectListing` as they stream a disk listing
(``handlers.listing_of``), a chunk at a time at the client's pace.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from natftp.proto import listing, paths
from natftp.proto.ascii import FromWire, ToWire
from natftp.proto.paths import PathError
from natftp.proto.replies import Reply
from natftp.server import data
from natftp.server.handlers import (
    Result,
    _need_data,
    _perm_fact,
    _stream,
    _take_rest,
    ascii_size_ok,
    restart_ok,
    vpath,
)
from natftp.server.listings import ObjectListing
from natftp.storage.local import StorageError
from natftp.storage.s3 import ObjectReader, ObjectUpload, S3Storage

if TYPE_CHECKING:
    from natftp.server.session import Session


def _st(s: Session) -> S3Storage:
    assert isinstance(s.storage, S3Storage)
    return s.storage


def _op(verb: str, fn: Callable[[Session, S3Storage, str], Coroutine[Any, Any, None]],
        ) -> Callable[[Session, str], Result]:
    """A handler: resolve the path, run ``fn``; a storage error is the reply."""
    def handler(s: Session, arg: str) -> Result:
        p = vpath(s, verb, arg if verb not in ("MLSD", "MLST") else (arg.strip() or "."))
        if p is None:
            return None

        async def run() -> None:
            try:
                await fn(s, _st(s), p)
            except StorageError as e:
                s.storage_error(verb, e)
        return run()
    return handler


# -- directories ---------------------------------------------------------------------

async def _cwd(s: Session, st: S3Storage, p: str) -> None:
    if not await st.is_dir(p):
        await st.facts(p)  # 550 no such file, or:
        s.refuse(550, f"CWD refused: {p} is not a directory.")
        return
    s.cwd = p
    s.reply(250, f"Directory changed to {p}.")


def cdup(s: Session, arg: str) -> Result:
    if s.cwd == "/":
        s.refuse(550, "CDUP refused: already at the top of the home directory.")
        return None
    return HANDLERS["CWD"](s, "..")


async def _mkd(s: Session, st: S3Storage, p: str) -> None:
    await st.mkdir(p)
    s.event("created directory %s", p)
    s.reply(257, f"{paths.quote_257(p)} created.")


async def _rmd(s: Session, st: S3Storage, p: str) -> None:
    await st.rmdir(p)
    s.event("removed directory %s", p)
    s.reply(250, f"Directory {p} removed.")


async def _dele(s: Session, st: S3Storage, p: str) -> None:
    await st.remove(p)
    s.event("deleted %s", p)
    s.reply(250, f"File {p} deleted.")


async def _rnfr(s: Session, st: S3Storage, p: str) -> None:
    await st.exists(p)
    s.rnfr = p
    s.reply(350, f"{p} exists; send RNTO with the new name.")


def rnto(s: Session, arg: str) -> Result:
    src, s.rnfr = s.rnfr, None
    if src is None:
        s.refuse(503, "RNTO must follow RNFR.")
        return None

    async def move(s: Session, st: S3Storage, p: str) -> None:
        await st.rename(src, p)
        s.event("renamed %s to %s (object storage: copied, then deleted)", src, p)
        s.reply(250, f"Renamed {src} to {p}.")
    return _op("RNTO", move)(s, arg)


async def _size(s: Session, st: S3Storage, p: str) -> None:
    if s.perms.write and s.binary:
        # an interrupted upload of this name: its size is where a resume starts (as on
        # disk: TYPE I, users who may write)
        kept = await st.kept_size(p)
        if kept is not None:
            s.reply(213, str(kept))
            return
    f = await st.facts(p)
    if not f.is_file:
        s.refuse(550, f"SIZE refused: {p} is not a regular file.")
        return
    if s.binary:
        s.reply(213, str(f.size))
        return
    if not ascii_size_ok(s, p, f.size):
        return
    # TYPE A: the size on the wire (RFC 3659 §4), the object read through the converter
    reader = await st.open_read(p)
    enc = ToWire()
    n = 0
    try:
        async for chunk in reader.chunks():
            n += enc.count(chunk)
    finally:
        reader.close()
    s.reply(213, str(n))


async def _mdtm(s: Session, st: S3Storage, p: str) -> None:
    f = await st.facts(p)
    s.reply(213, listing.mlst_time(f.mtime).split(".")[0])


def mfmt(s: Session, arg: str) -> Result:
    _when, _, name = arg.strip().partition(" ")
    p = vpath(s, "MFMT", name or ".")
    if p is None:
        return None
    s.refuse(550, f"MFMT refused: {p}: object storage keeps the time an object was stored; "
                  "it cannot be set.")
    return None


async def _mlst(s: Session, st: S3Storage, p: str) -> None:
    f = await st.facts(p)
    line = listing.mlst_line(f, _perm_fact(s, f), s.mlst_facts, name=p)
    s.send_reply(Reply(250, (f"Listing {p}", line, "End.")))


# -- transfers -------------------------------------------------------------------------

def retr(s: Session, arg: str) -> Result:
    offset = _take_rest(s)
    p = vpath(s, "RETR", arg)
    if p is None or not _need_data(s, "RETR"):
        return None

    async def run() -> None:
        try:
            # TYPE A: REST counts wire octets, so the object is read from its start and
            # the converter skips them
            reader = await _st(s).open_read(p, offset if s.binary else 0)
        except StorageError as e:
            s.storage_error("RETR", e)
            return
        try:
            if s.binary and offset > reader.size:
                s.refuse(554, f"RETR refused: restart offset {offset} is beyond the end of "
                              f"{p} ({reader.size} bytes).")
                return
            mode = "BINARY" if s.binary else "ASCII"
            mark = (f"Opening {mode} mode data connection for {p} "
                    f"({reader.size - offset} bytes).")

            enc = None if s.binary else ToWire(offset)

            async def body(chan: data.Channel, prog: data.Progress) -> int:
                return await send_object(chan, reader, prog, enc)
            await s.transfer("RETR", p, mark, body)
        finally:
            reader.close()
    return run()


async def send_object(chan: data.Channel, reader: ObjectReader, prog: data.Progress,
                      enc: ToWire | None) -> int:
    """The object's bytes as they arrive from the service (through ``enc`` in TYPE A)."""
    sent = 0
    try:
        async for chunk in reader.chunks():
            out = chunk if enc is None else enc.feed(chunk)
            await chan.send(out)
            sent += len(out)
            prog.bytes += len(out)
    except StorageError as e:
        raise OSError(errno.EIO, str(e)) from None
    except (ConnectionError, TimeoutError) as e:
        raise OSError(errno.EIO, f"the object store's answer broke off ({e})") from None
    return sent


def _store(s: Session, verb: str, arg: str, *, append: bool = False,
           unique: bool = False) -> Result:
    offset = _take_rest(s)
    p: str | None
    if unique:
        p = None
    else:
        p = vpath(s, verb, arg)
        if p is None:
            return None
    if not restart_ok(s, verb, offset) or not _need_data(s, verb):
        return None

    async def run() -> None:
        st = _st(s)
        target = p
        try:
            if target is None:
                try:
                    stem = paths.basename(paths.resolve("/", paths.basename(arg.strip())))
                except PathError as e:
                    s.refuse(550, f"STOU refused: {e}.")
                    return
                target = await st.unique_name(s.cwd, stem or "file")
            up = await st.open_write(target, offset=offset, append=append, unique=unique)
        except StorageError as e:
            s.storage_error(verb, e)
            return

        async def body(chan: data.Channel, prog: data.Progress) -> int:
            return await recv_to_object(chan, up, prog, ascii=not s.binary)
        at = f" at offset {up.size}" if up.resumed else ""
        mark = (f"FILE: {paths.basename(target)}" if unique else
                f"Opening {'BINARY' if s.binary else 'ASCII'} mode data connection for "
                f"{target}{at} (object storage: it appears when the upload is complete).")
        await s.transfer(verb, target, mark, body, upload=up)
    return run()


async def recv_to_object(chan: data.Channel, up: ObjectUpload, prog: data.Progress,
                         *, ascii: bool) -> int:
    """The data connection straight into the upload's part buffer (TYPE I), or through
    the CRLF -> LF decoder (TYPE A). Parts go out while the next one fills."""
    got = 0
    try:
        if ascii:
            dec = FromWire()
            buf = bytearray(data.ASCII_CHUNK)
            while n := await chan.recv_into(buf):
                got += n
                prog.bytes += n
                await up.write(dec.feed(bytes(buf[:n])))
            await up.write(dec.end())
            return got
        while True:
            n = await chan.recv_into(up.buffer())  # type: ignore[arg-type]
            if n == 0:
                return got
            got += n
            prog.bytes += n
            await up.advance(n)
    except StorageError as e:
        raise OSError(errno.EIO, str(e)) from None


def stor(s: Session, arg: str) -> Result:
    return _store(s, "STOR", arg)


def appe(s: Session, arg: str) -> Result:
    s.rest = 0  # REST+APPE: the offset is where the kept upload ends anyway
    return _store(s, "APPE", arg, append=True)


def stou(s: Session, arg: str) -> Result:
    return _store(s, "STOU", arg, unique=True)


# -- listings -------------------------------------------------------------------------

def mlsd(s: Session, arg: str) -> Result:
    """MLSD streamed as LIST and NLST are (handlers.listing_of); a file is refused."""
    p = vpath(s, "MLSD", arg.strip() or ".")
    if p is None:
        return None
    facts = s.mlst_facts
    return _stream(s, "MLSD", p, ObjectListing(
        _st(s), p, lambda f: listing.mlst_line(f, _perm_fact(s, f), facts),
        dirs_only=True))


HANDLERS: dict[str, Callable[[Session, str], Result]] = {
    "CWD": _op("CWD", _cwd), "XCWD": _op("CWD", _cwd), "CDUP": cdup, "XCUP": cdup,
    "MKD": _op("MKD", _mkd), "XMKD": _op("MKD", _mkd),
    "RMD": _op("RMD", _rmd), "XRMD": _op("RMD", _rmd),
    "DELE": _op("DELE", _dele), "RNFR": _op("RNFR", _rnfr), "RNTO": rnto,
    "SIZE": _op("SIZE", _size), "MDTM": _op("MDTM", _mdtm), "MFMT": mfmt,
    "MLST": _op("MLST", _mlst),
    "RETR": retr, "STOR": stor, "APPE": appe, "STOU": stou,
    "MLSD": mlsd,
}
