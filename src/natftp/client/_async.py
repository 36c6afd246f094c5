"""The async client: the one implementation that :class:`BlockingClient` also runs.

Protocol knowledge comes from :mod:`natftp.proto` (replies, commands, addresses,
listings); this module only moves bytes and decides which data-connection strategy to use.

Data connections, the part that breaks across NAT, are tried in order:

1. ``EPSV``: the server names only a port; we reuse the control connection's address.
2. ``PASV``: the server names an address and a port. Unless ``trust_pasv_address`` is
   set, any address other than the control connection's peer (0.0.0.0, a private or
   CGNAT address behind the server's NAT, or a third host, CVE-2020-8284) is replaced by
   the control peer.
3. active (``EPRT``, then ``PORT`` if EPRT is refused): the server connects back to us,
   at ``active_address`` if we are behind NAT ourselves, or (``active_discover=True``)
   at the public address discovered from the router/STUN, on a port the router maps to
   us (``natftp.client.zeroconf``).

A strategy is abandoned when its command is refused *or* when its data connection fails
(refused, or no connection within the short ``data_timeout``), and the next one is tried.
The strategy that worked is remembered for the session; every fallback is logged on the
``natftp.client`` logger with its reason.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import posixpath
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

from natftp.client.partial import complete, partial_path
from natftp.ftpio.control import Control
from natftp.ftpio.data import ActiveListener, dial, start_tls, streams
from natftp.ftpio.errors import (
    Attempt,
    ConnectionFailed,
    ConnectionLost,
    DataConnectionError,
    DialError,
    FTPError,
    PermanentError,
    ProtocolError,
    ReplyError,
    TimeoutError,
    reply_error,
)
from natftp.ftpio.tls import make_context
from natftp.proto import addr
from natftp.proto.commands import Command
from natftp.proto.feat import Features, parse_feat
from natftp.proto.listparse import (
    Entry,
    ListingError,
    format_mlsx_time,
    parse_list,
    parse_mlsd,
    parse_mlsx_line,
    parse_mlsx_time,
)
from natftp.proto.replies import Reply
from natftp.proto.url import parse_url

if TYPE_CHECKING:
    from natftp.client.zeroconf import ActiveDiscovery

log = logging.getLogger("natftp.client")

Mode = Literal["auto", "passive", "active"]
Strategy = Literal["epsv", "pasv", "active"]
ProgressCallback = Callable[[int, int | None], None]
TraceCallback = Callable[[str, str], None]
Source = str | os.PathLike[str] | IO[bytes] | bytes
Sink = str | os.PathLike[str] | IO[bytes]

EntryList = list[Entry]
StrList = list[str]
AttemptList = list[Attempt]
StrategyList = list[Strategy]

T = TypeVar("T")

CHUNK = 64 * 1024
_UNSUPPORTED = (500, 502, 504)  # "I don't know that command" replies


class _Skip(Exception):
    """A data-connection strategy did not work; try the next one."""

    def __init__(self, reason: str, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused


class _Sink:
    """Where a download's bytes go: a file object, or a path opened (appended to when
    continuing) only when the server accepted the transfer; and its progress."""

    def __init__(self, fh: IO[bytes] | None, path: str | None, offset: int,
                 total: int | None, progress: ProgressCallback | None) -> None:
        self.fh, self.path = fh, path
        self.offset, self.total, self.progress = offset, total, progress
        self.received = 0
        self.opened = False

    def open(self) -> None:
        if self.path is not None:
            self.fh = open(self.path, "ab" if self.offset else "wb")  # noqa: SIM115
            self.opened = True

    def write(self, chunk: bytes) -> None:
        assert self.fh is not None
        self.fh.write(chunk)
        self.moved(len(chunk))

    def moved(self, n: int) -> None:
        self.received += n
        if self.progress is not None:
            self.progress(self.offset + self.received, self.total)

    def close(self) -> None:
        if self.opened and self.fh is not None:
            self.fh.close()


@dataclass
class _Data:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    strategy: Strategy
    address: tuple[str, int]


class Client:
    """An FTP/FTPS session. Use ``async with Client(url) as ftp:``.

    ``url`` is ``ftp://[user[:password]@]host[:port]/`` (``ftps://`` implicit TLS,
    ``ftpes://`` explicit TLS); keyword arguments override what it says. The path part
    of the URL is ignored here (the CLI uses it).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        data_timeout: float = 5.0,
        mode: Mode = "auto",
        epsv: bool = True,
        trust_pasv_address: bool = False,
        active_address: str | None = None,
        active_discover: bool = False,
        active_stun: Sequence[str] = (),
        tls: Literal["explicit", "implicit"] | None = None,
        verify: bool | str = True,
        fingerprint: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        protect_data: bool = True,
        trace: TraceCallback | None = None,
    ) -> None:
        scheme_tls: str | None = None
        if url is not None:
            u = parse_url(url)
            host = host or u.host
            port = port or u.port
            user = user if user is not None else u.user
            password = password if password is not None else u.password
            scheme_tls = u.tls
        if not host:
            raise ValueError("Client needs a URL or host=")
        self.tls: str | None = tls or scheme_tls
        self.host = host
        self.port = port or (990 if self.tls == "implicit" else 21)
        self.user = user or "anonymous"
        self.password = password if password is not None else ("anonymous@" if not user else "")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.data_timeout = data_timeout
        if mode not in ("auto", "passive", "active"):
            raise ValueError(f"mode must be auto, passive or active, not {mode!r}")
        self.mode: Mode = mode
        self.epsv = epsv
        self.trust_pasv_address = trust_pasv_address
        self.active_address = active_address
        #: issue 8: learn our public address and map our listening port for active mode
        self._discovery: ActiveDiscovery | None = None
        if active_discover:  # imported here: it brings aiohttp and async-upnp-client
            from natftp.client.zeroconf import ActiveDiscovery
            self._discovery = ActiveDiscovery(active_stun)
        self.fingerprint = fingerprint
        self.protect_data = protect_data
        self._ssl: ssl.SSLContext | None = None
        if self.tls is not None:
            self._ssl = ssl_context or make_context(verify, fingerprint)
        self._trace = trace
        self._ctl: Control | None = None
        self._data_tls = False
        self.peer: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.welcome: str = ""
        self.features: Features = Features()
        self.data_strategy: Strategy | None = None
        self.last_data_address: tuple[str, int] | None = None
        self.last_data_tls_reused: bool | None = None
        self._refused: set[str] = set()
        self._pasv_warned: set[str] = set()
        self._mlsd: bool | None = None

    # -- connection ------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ctl is not None and self._ctl.connected

    def _hook(self, direction: str, text: str) -> None:
        """Every line of the dialogue: the debug log, and the caller's ``trace``."""
        log.debug("%s %s", direction, text)
        if self._trace is not None:
            self._trace(direction, text)

    async def connect(self) -> None:
        """Open the control connection, do TLS if asked, log in, read FEAT."""
        implicit = self._ssl if self.tls == "implicit" else None
        ctl = await Control.connect(self.host, self.port, timeout=self.timeout,
                                    connect_timeout=self.connect_timeout,
                                    implicit_tls=implicit, fingerprint=self.fingerprint,
                                    trace=self._hook)
        self._ctl = ctl
        self.peer, self.local = ctl.peer, ctl.local
        try:
            banner = await ctl.greet(self.connect_timeout)
            if banner.code != 220:
                raise ConnectionFailed(f"server refused the session: {banner.code} "
                                       f"{banner.text}")
            self.welcome = banner.text
            if self.tls == "explicit":
                assert self._ssl is not None
                await ctl.auth_tls(self._ssl, server_hostname=self.host,
                                   timeout=self.connect_timeout, fingerprint=self.fingerprint)
            await ctl.login(self.user, self.password)
            if self.tls is not None and self.protect_data:
                await ctl.protect()
                self._data_tls = True
            self.features = parse_feat(await ctl.cmd("FEAT"))
            if not self.features.has("MLSD"):
                self._mlsd = False
            if "UTF8" in self.features:
                await ctl.cmd("OPTS", "UTF8 ON")
            await ctl.command("TYPE", "I")
        except BaseException:
            self._drop()
            raise

    async def close(self) -> None:
        """Say QUIT (briefly) and close. Safe to call twice or after a failure."""
        if self._ctl is None:
            return
        ctl, self._ctl = self._ctl, None
        await ctl.quit(min(self.timeout, 2.0))
        if self._discovery is not None:
            await self._discovery.close()

    def _drop(self) -> None:
        if self._ctl is not None:
            self._ctl.abort()
        self._ctl = None

    # -- the dialogue ------------------------------------------------------------------

    @property
    def _c(self) -> Control:
        if self._ctl is None or not self._ctl.connected:
            raise ConnectionLost("not connected")
        return self._ctl

    def _note(self, text: str) -> None:
        self._hook("*", text)

    def _fallback(self, text: str) -> None:
        log.info("%s", text)
        if self._trace is not None:
            self._trace("*", text)

    def _warn(self, text: str) -> None:
        """Something the user asked for did not happen as asked (nothing to resume):
        a warning on the ``natftp.client`` logger, which the CLI prints."""
        log.warning("%s", text)

    async def _cmd(self, name: str, arg: str = "") -> Reply:
        """Send a command and return its reply, whatever it is."""
        return await self._c.cmd(name, arg)

    async def command(self, name: str, arg: str = "") -> Reply:
        """Send any command; a 4xx/5xx reply raises TransientError/PermanentError."""
        return await self._c.command(name.upper(), arg)

    # -- data connections ------------------------------------------------------------

    def _strategies(self) -> StrategyList:
        if self.mode == "active":
            order: StrategyList = ["active"]
        else:
            order = ["epsv", "pasv"] if self.epsv else ["pasv"]
            if self.mode == "auto":
                order.append("active")
        order = [s for s in order if s not in self._refused] or order
        if self.data_strategy in order:
            order.remove(self.data_strategy)
            order.insert(0, self.data_strategy)
        return order

    async def _open_transfer(self, cmd: Command, rest: int = 0) -> tuple[_Data, Reply]:
        """Open a data connection for ``cmd`` with the first strategy that works, send
        the command (after REST when resuming) and return the connection and its
        preliminary reply."""
        attempts: AttemptList = []
        order = self._strategies()
        for i, strategy in enumerate(order):
            try:
                if strategy == "active":
                    data, prelim = await self._active(cmd, rest)
                else:
                    data = await self._passive(strategy)
                    try:
                        prelim = await self._start(cmd, rest)
                    except BaseException:
                        await self._close_data(data)
                        raise
            except _Skip as e:
                attempts.append(Attempt(strategy, e.reason))
                if e.refused:
                    self._refused.add(strategy)
                nxt = order[i + 1] if i + 1 < len(order) else None
                self._fallback(f"{strategy.upper()} did not work: {e.reason}"
                               + (f"; trying {nxt.upper()}" if nxt else ""))
                continue
            if self.data_strategy != strategy:
                self._note(f"using {strategy.upper()} for data connections")
            self.data_strategy = strategy
            self.last_data_address = data.address
            return data, prelim
        raise DataConnectionError(f"no data connection for {cmd.name} could be made",
                                  attempts)

    async def _connect_data(self, host: str, port: int) -> tuple[asyncio.StreamReader,
                                                                 asyncio.StreamWriter]:
        self._note(f"Opening data connection to {host} port {port}")
        try:
            sock = await dial(host, port, self.data_timeout)
        except DialError as e:
            raise _Skip(f"data connection to {e}") from e
        return await streams(sock, timeout=self.timeout)

    async def _passive(self, strategy: Strategy) -> _Data:
        c = self._c
        verb = strategy.upper()
        r = await c.cmd(verb)
        if r.code != (229 if strategy == "epsv" else 227):
            raise _Skip(f"{verb} refused: {r.code} {r.text}", refused=r.kind == 5)
        try:
            target = addr.passive_target(r.code, r.text, c.peer_ip,
                                         trust=self.trust_pasv_address)
        except addr.AddressError as e:
            raise _Skip(f"unreadable {r.code} reply: {e}") from e
        if target.ignored is not None:
            seen = str(target.ignored) in self._pasv_warned
            self._pasv_warned.add(str(target.ignored))
            say = self._note if seen else self._fallback
            say(f"{target.note()} (use trust_pasv_address to follow it)")
        host = str(target.host)
        reader, writer = await self._connect_data(host, target.port)
        return _Data(reader, writer, strategy, (host, target.port))

    async def _start(self, cmd: Command, rest: int, active: bool = False) -> Reply:
        """REST (if resuming) and the transfer command; returns the 1xx (or early 2xx).

        In active mode servers connect to us before they answer, and one that cannot
        answers only after its own connect timeout (vsftpd: 60 s), so the wait is short
        and ends with ABOR."""
        if rest:
            r = await self._cmd("REST", str(rest))
            if r.code != 350:
                raise reply_error(r, "REST")
        c = self._c
        await c.send(cmd)
        try:
            r = await c.reply(self.data_timeout if active else self.timeout)
        except TimeoutError as e:
            if not active:
                raise
            await self._abort()
            raise _Skip(f"no answer to {cmd.name} within {self.data_timeout:g} s: the "
                        "server could not connect back (a firewall or NAT on our side?)") from e
        if r.kind in (1, 2):
            return r
        if r.code == 425:
            raise _Skip(f"server could not use the data connection: {r.code} {r.text}")
        raise reply_error(r, cmd.name)

    async def _active(self, cmd: Command, rest: int) -> tuple[_Data, Reply]:
        c = self._c
        bind_ip = str(c.local_ip)
        advertised, want_port = self.active_address or bind_ip, 0
        if (self._discovery is not None and self.active_address is None
                and self._discovery.needed(bind_ip, str(c.peer_ip))):
            plan = await self._discovery.prepare(bind_ip)
            self._note(f"active mode: {plan.note}")
            advertised, want_port = plan.address, plan.port
        listener = ActiveListener.open(bind_ip, want_port)
        try:
            port = listener.port
            ok = False
            if "eprt" not in self._refused:
                r = await c.cmd("EPRT", addr.format_eprt_arg(advertised, port))
                ok = r.kind == 2
                if r.kind == 5:
                    self._refused.add("eprt")
                why = f"EPRT refused: {r.code} {r.text}"
            if not ok and ":" not in str(addr.ip(advertised)):
                r = await c.cmd("PORT", addr.format_port_arg(advertised, port))
                ok = r.kind == 2
                why = f"PORT refused: {r.code} {r.text}"
            if not ok:
                raise _Skip(why, refused=r.kind == 5)
            self._note(f"Waiting for the server to connect to {advertised} port {port}")
            prelim = await self._start(cmd, rest, active=True)
            try:
                conn, _ = await listener.accept(self.data_timeout)
            except builtins.TimeoutError as e:
                await self._abort()
                raise _Skip(f"the server did not connect back to {advertised}:{port} within "
                            f"{self.data_timeout:g} s (a firewall or NAT on our side?)") from e
            reader, writer = await streams(conn, timeout=self.timeout)
            return _Data(reader, writer, "active", (advertised, port)), prelim
        finally:
            listener.close()

    async def _abort(self) -> None:
        """ABOR a transfer and read the replies it causes; drop the session if they
        do not come, since the dialogue would be out of step."""
        try:
            c = self._c
            await c.send(Command("ABOR"))
            deadline = asyncio.get_running_loop().time() + max(self.data_timeout, 2.0)
            while True:
                left = deadline - asyncio.get_running_loop().time()
                r = await c.reply(max(left, 0.1))
                if r.kind != 1 and r.code != 426 and r.code != 425 and r.code != 451:
                    break
        except FTPError:
            self._drop()

    async def _secure(self, data: _Data) -> None:
        if not self._data_tls:
            return
        ctx = self._c.data_tls(reuse=True)
        if ctx is None:
            return
        obj = await start_tls(data.writer, ctx, server_hostname=self.host,
                              timeout=self.timeout)
        self.last_data_tls_reused = bool(obj.session_reused) if obj is not None else None

    async def _close_data(self, data: _Data) -> None:
        data.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(data.writer.wait_closed(), self.timeout)

    async def _finish(self, prelim: Reply, what: str) -> Reply:
        if prelim.kind == 2:
            return prelim
        r = await self._c.final()
        if r.kind != 2:
            raise reply_error(r, what)
        return r

    async def _transfer(self, cmd: Command, rest: int,
                        move: Callable[[_Data], Awaitable[int]],
                        started: Callable[[], None] | None = None) -> int:
        """Run a transfer command: a data connection by the first strategy that works,
        the command, ``started()`` once the server accepted it (its 1xx, or an early 2xx),
        TLS, ``move`` (the bytes), and the final reply. A transfer that did not finish is
        ABORted. Returns what ``move`` returned (the byte count)."""
        data, prelim = await self._open_transfer(cmd, rest)
        done = False
        try:
            if started is not None:
                started()
            await self._secure(data)
            moved = await move(data)
            done = True
        finally:
            await self._close_data(data)
            if not done and self.connected:
                await self._abort()
        await self._finish(prelim, cmd.name)
        return moved

    async def _step(self, cmd: Command, io: Awaitable[T], moved: int, stalled: str) -> T:
        """One read or drain of a transfer, bounded by the timeout; its failures say how
        far the transfer got."""
        try:
            return await asyncio.wait_for(io, self.timeout)
        except builtins.TimeoutError as e:
            raise TimeoutError(f"{cmd.name}: {stalled} for {self.timeout:g} s after {moved} "
                               "bytes") from e
        except OSError as e:
            raise DataConnectionError(f"{cmd.name}: data connection broke after {moved} "
                                      f"bytes: {e}") from e

    async def _retrieve(self, cmd: Command, consume: Callable[[bytes], None],
                        rest: int = 0, started: Callable[[], None] | None = None) -> int:
        """A download command; ``started`` is called before the first byte, only when the
        server accepted the command: a refused RETR never reaches it, so nothing local is
        created or truncated for a file that is not there."""
        async def move(data: _Data) -> int:
            received = 0
            while chunk := await self._step(cmd, data.reader.read(CHUNK), received,
                                            "no data"):
                received += len(chunk)
                consume(chunk)
            return received

        return await self._transfer(cmd, rest, move, started)

    async def _store(self, cmd: Command, source: IO[bytes], rest: int,
                     progress: Callable[[int], None]) -> int:
        async def move(data: _Data) -> int:
            sent = 0
            while chunk := source.read(CHUNK):
                data.writer.write(chunk)
                await self._step(cmd, data.writer.drain(), sent, "could not send")
                sent += len(chunk)
                progress(sent)
            return sent

        return await self._transfer(cmd, rest, move)

    async def _lines(self, cmd: Command) -> StrList:
        buf = bytearray()
        await self._retrieve(cmd, buf.extend)
        text = bytes(buf).decode("utf-8", "surrogateescape")
        return [line for line in text.replace("\r\n", "\n").split("\n") if line]

    # -- directory operations ------------------------------------------------------------

    async def pwd(self) -> str:
        r = await self.command("PWD")
        text = r.text
        if '"' in text:
            start = text.index('"') + 1
            out = []
            i = start
            while i < len(text):  # RFC 959: "" inside the quotes is a literal quote
                if text[i] == '"':
                    if text[i + 1:i + 2] == '"':
                        out.append('"')
                        i += 2
                        continue
                    break
                out.append(text[i])
                i += 1
            return "".join(out)
        return text.split(" ", 1)[0]

    async def cwd(self, path: str) -> None:
        await self.command("CWD", path)

    async def list(self, path: str = "") -> EntryList:
        """Entries of a directory: MLSD when the server has it, else parsed LIST."""
        if self._mlsd is not False:
            try:
                lines = await self._lines(Command("MLSD", path))
                self._mlsd = True
                return parse_mlsd(lines)
            except PermanentError as e:
                if e.code not in _UNSUPPORTED or self._mlsd:
                    raise
                self._mlsd = False
                self._fallback(f"MLSD refused ({e.code} {e.text}); using LIST")
            except ListingError as e:
                raise ProtocolError(f"unreadable MLSD listing: {e}") from e
        arg = path
        if arg.startswith("-"):
            arg = "./" + arg  # a leading dash would be taken for ls options
        lines = await self._lines(Command("LIST", arg))
        try:
            entries = parse_list(lines, now=datetime.now(UTC))
        except ListingError as e:
            raise ProtocolError(f"unreadable LIST listing: {e}") from e
        name = posixpath.basename(path.rstrip("/"))
        if path and (not entries or (len(entries) == 1 and entries[0].is_dir
                                     and entries[0].name == name)):
            # LIST has no way to say "cannot open": vsftpd answers 226 with nothing for a
            # missing directory, and with the directory's own line (ls -ld) for one it
            # may not read. An empty or self-only listing is believed when the directory
            # can be entered; otherwise it would pass for an empty directory (and a
            # mirror --delete would remove what it holds).
            if not await self._can_enter(path):
                raise PermanentError(Reply.of(550, f"cannot list {path}: the server "
                                              "cannot open it as a directory"), "LIST")
        return entries

    async def names(self, path: str = "") -> StrList:
        """NLST: bare names (some servers return paths)."""
        return await self._lines(Command("NLST", path))

    async def stat(self, path: str) -> Entry:
        """One entry's facts: MLST when available, else SIZE/MDTM (and CWD for dirs)."""
        base = posixpath.basename(path.rstrip("/")) or path
        if "MLST" in self.features:
            r = await self._cmd("MLST", path)
            if r.code == 250:
                for line in r.lines[1:]:
                    if "=" in line and ";" in line:
                        try:
                            e = parse_mlsx_line(line)
                        except ListingError as err:
                            raise ProtocolError(f"unreadable MLST reply: {err}") from err
                        return Entry(base, e.type, e.size, e.modified, e.precision, e.target,
                                     e.permissions, e.facts)
            elif r.kind == 5 and r.code not in _UNSUPPORTED:
                raise reply_error(r, "MLST")
        r = await self._cmd("SIZE", path)
        if r.code == 213 and r.text.strip().isdigit():
            size = int(r.text.strip())
            modified = await self.mtime(path)
            return Entry(base, "file", size, modified)
        # not a file: a directory if we can change into it
        c = await self._enter(path)
        if c.kind == 2:
            return Entry(base, "dir")
        raise reply_error(r if r.kind >= 4 else c, "SIZE")

    async def _enter(self, path: str) -> Reply:
        """CWD into ``path`` and, when that works, back where we were: its reply says
        whether ``path`` is a directory we may enter."""
        here = await self.pwd()
        r = await self._cmd("CWD", path)
        if r.kind == 2:
            await self.command("CWD", here)
        return r

    async def _can_enter(self, path: str) -> bool:
        return (await self._enter(path)).kind == 2

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except PermanentError:
            return False
        return True

    async def size(self, path: str) -> int:
        r = await self.command("SIZE", path)
        try:
            return int(r.text.strip())
        except ValueError as e:
            raise ProtocolError(f"unreadable SIZE reply {r.text!r}") from e

    async def mtime(self, path: str) -> datetime | None:
        r = await self._cmd("MDTM", path)
        if r.code != 213:
            return None
        try:
            return parse_mlsx_time(r.text.strip())
        except ListingError:
            return None

    async def set_mtime(self, path: str, when: datetime) -> bool:
        """MFMT (or vsftpd-style MDTM with a time); False when the server can't."""
        stamp = format_mlsx_time(when)
        if "MFMT" in self.features:
            r = await self._cmd("MFMT", f"{stamp} {path}")
            return r.kind == 2
        return False

    async def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        if parents:
            parts = [p for p in path.split("/") if p]
            cur = "/" if path.startswith("/") else ""
            for p in parts:
                cur = posixpath.join(cur, p) if cur else p
                r = await self._cmd("MKD", cur)
                if r.kind >= 4 and not await self._is_dir(cur):
                    raise reply_error(r, "MKD")
            return
        r = await self._cmd("MKD", path)
        if r.kind >= 4:
            if exist_ok and await self._is_dir(path):
                return
            raise reply_error(r, "MKD")

    async def _is_dir(self, path: str) -> bool:
        try:
            return (await self.stat(path)).is_dir
        except ReplyError:
            return False

    async def rmdir(self, path: str) -> None:
        await self.command("RMD", path)

    async def remove(self, path: str) -> None:
        await self.command("DELE", path)

    async def rename(self, src: str, dst: str) -> None:
        r = await self._cmd("RNFR", src)
        if r.code != 350:
            raise reply_error(r, "RNFR")
        await self.command("RNTO", dst)

    async def walk(self, top: str = "") -> AsyncIterator[tuple[str, EntryList, EntryList]]:
        """Like os.walk, top-down: ``(dirpath, dirs, files)``; links count as files."""
        stack = [top]
        while stack:
            d = stack.pop()
            entries = await self.list(d)
            dirs = [e for e in entries if e.is_dir]
            files = [e for e in entries if not e.is_dir]
            yield d, dirs, files
            for e in reversed(dirs):
                stack.append(posixpath.join(d, e.name) if d else e.name)

    # -- transfers -------------------------------------------------------------------

    async def download(self, remote: str, dest: Sink, *, resume: bool = False,
                       progress: ProgressCallback | None = None) -> int:
        """Download ``remote`` to a local path or a binary file object; returns the bytes
        received.

        A path is never touched before the transfer is complete: the bytes go to a
        partial file beside it (:func:`natftp.client.partial.partial_path`), created only
        once the server accepted RETR and renamed over the path at the end, so a refused,
        failed or killed download leaves an existing file as it was. A partial file that
        holds bytes is kept after a failure. A path that is a device or a pipe
        (``/dev/null``) is written as it is.

        With ``resume``, that partial file (or, when there is none, a partial file at
        the path itself) is continued with REST, appended to only once the server
        accepted REST and RETR; a file object is continued from its position."""
        total: int | None = None
        r = await self._cmd("SIZE", remote)
        if r.code == 213 and r.text.strip().isdigit():
            total = int(r.text.strip())
        if not isinstance(dest, (str, os.PathLike)):
            offset = 0
            if resume:
                with contextlib.suppress(OSError, ValueError):
                    offset = dest.tell()
            return await self._receive(remote, _Sink(dest, None, offset, total, progress))
        final = os.fspath(dest)
        if os.path.islink(final):
            final = os.path.realpath(final)
        if os.path.exists(final) and not os.path.isfile(final):
            # a device or a pipe: never replaced by a file
            return await self._receive(remote, _Sink(None, final, 0, total, progress))
        part = partial_path(final)
        target, offset = part, 0
        if resume:
            if os.path.isfile(part):
                offset = os.path.getsize(part)
            elif os.path.isfile(final):
                target, offset = final, os.path.getsize(final)
            if total is not None and offset > total:
                self._warn(f"{target} is larger than {remote} on the server ({offset} > "
                           f"{total} bytes): downloading the whole file again")
                target, offset = part, 0
            elif not offset:
                self._warn(f"nothing to resume at {final} (no partial download of "
                           f"{remote} here); downloading the whole file")
        sink = _Sink(None, target, offset, total, progress)
        if total is not None and offset == total and offset:
            sink.moved(0)
            if target == part:  # complete, but not renamed yet (killed at the very end)
                complete(part, final)
            return 0
        try:
            received = await self._receive(remote, sink)
        except BaseException:
            if target == part and sink.opened:
                if offset + sink.received == 0:
                    with contextlib.suppress(OSError):
                        os.remove(part)
                else:
                    self._warn(f"the {offset + sink.received} bytes received are kept in "
                               f"{part}; `natftp get -c` (download(..., resume=True)) "
                               "continues from there")
            raise
        if target == part:
            complete(part, final)
        return received

    async def _receive(self, remote: str, sink: _Sink) -> int:
        """RETR (after REST when the sink continues something) into ``sink``."""
        sink.moved(0)
        if sink.offset and sink.offset == sink.total:
            return 0
        try:
            await self._retrieve(Command("RETR", remote), sink.write, rest=sink.offset,
                                 started=sink.open)
        finally:
            sink.close()
        return sink.received

    async def read_bytes(self, remote: str) -> bytes:
        buf = bytearray()
        await self._retrieve(Command("RETR", remote), buf.extend)
        return bytes(buf)

    async def upload(self, source: Source, remote: str, *, resume: bool = False,
                     progress: ProgressCallback | None = None) -> int:
        """Upload a local path, a binary file object or bytes to ``remote``; returns the
        bytes sent. With ``resume``, the remote file's size is the offset (REST + STOR,
        or APPE when REST is refused)."""
        import io

        owned: IO[bytes] | None = None
        if isinstance(source, (bytes, bytearray)):
            fh: IO[bytes] = io.BytesIO(bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            owned = open(source, "rb")  # noqa: SIM115
            fh = owned
        else:
            fh = source
        try:
            total: int | None = None
            with contextlib.suppress(OSError, ValueError):
                pos = fh.tell()
                total = fh.seek(0, os.SEEK_END)
                fh.seek(pos)
            offset = 0
            if resume:
                r = await self._cmd("SIZE", remote)
                if r.code == 213 and r.text.strip().isdigit():
                    offset = int(r.text.strip())
                if total is not None and offset > total:
                    self._warn(f"{remote} on the server is larger than the local file "
                               f"({offset} > {total} bytes): uploading the whole file again")
                    offset = 0
                elif r.code in _UNSUPPORTED:
                    self._warn(f"cannot resume {remote}: the server does not answer SIZE "
                               f"({r.code} {r.text}); uploading the whole file")
                elif not offset:
                    said = f" ({r.code} {r.text})" if r.code != 213 else ""
                    self._warn(f"nothing to resume at {remote} (the server has no file or "
                               f"interrupted upload of that name{said}); uploading the "
                               "whole file")
                fh.seek(offset)
                if total is not None and offset == total:
                    if progress is not None:
                        progress(total, total)
                    return 0
            if progress is not None:
                progress(offset, total)

            def moved(sent: int) -> None:
                if progress is not None:
                    progress(offset + sent, total)

            cmd = Command("STOR", remote)
            if offset:
                try:
                    return await self._store(cmd, fh, offset, moved)
                except PermanentError as e:
                    if e.command not in ("REST", "STOR"):
                        raise
                    # ProFTPD refuses STOR after REST unless AllowStoreRestart is on
                    self._fallback(f"restarting STOR refused ({e.code} {e.text}); "
                                   "resuming with APPE")
                    fh.seek(offset)
                    return await self._store(Command("APPE", remote), fh, 0, moved)
            return await self._store(cmd, fh, 0, moved)
        finally:
            if owned is not None:
                owned.close()

    # -- mirroring -----------------------------------------------------------------------

    async def mirror_down(self, remote: str, local: str | os.PathLike[str], *,
                          delete: bool = False, dry_run: bool = False,
                          on_action: Callable[[Any], None] | None = None) -> Any:
        """Make local directory ``local`` a copy of remote directory ``remote``."""
        from natftp.client.mirror import mirror_down
        return await mirror_down(self, remote, os.fspath(local), delete=delete,
                                 dry_run=dry_run, on_action=on_action)

    async def mirror_up(self, local: str | os.PathLike[str], remote: str, *,
                        delete: bool = False, dry_run: bool = False,
                        on_action: Callable[[Any], None] | None = None) -> Any:
        """Make remote directory ``remote`` a copy of local directory ``local``."""
        from natftp.client.mirror import mirror_up
        return await mirror_up(self, os.fspath(local), remote, delete=delete,
                               dry_run=dry_run, on_action=on_action)
