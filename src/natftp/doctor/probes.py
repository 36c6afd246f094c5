"""The doctor's observations: what happened when we talked to the server, and nothing else.

Every probe here does network I/O through :mod:`natftp.ftpio` and returns a plain record
(what was sent, what came back, which connection opened). None of them decides whether
that is good: :mod:`natftp.doctor.verdicts` does, from these records, without a network.
Each probe that needs a logged-in session opens its own (a hung data connection cannot
spoil the next probe); every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import builtins
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from natftp.ftpio.control import Control
from natftp.ftpio.data import (
    ActiveListener,
    Probe,
    close_writer,
    dial,
    probe,
    read_all,
    start_tls,
    streams,
)
from natftp.ftpio.errors import (
    DialError,
    FTPError,
    NotTLSError,
    ReplyError,
    TimeoutError,
    TLSError,
)
from natftp.ftpio.tls import make_context
from natftp.proto.addr import (
    AddrClass,
    AddressError,
    classify,
    format_eprt_arg,
    format_port_arg,
    parse_227,
    parse_229,
)
from natftp.proto.feat import Features, parse_feat
from natftp.proto.replies import Reply
from natftp.proto.url import parse_url


def q(r: Reply) -> str:
    """A reply on one line, for evidence."""
    return str(r).replace("\r\n", " | ").replace("\n", " | ")


@dataclass(frozen=True)
class Target:
    """What the doctor examines: from an ``ftp://``, ``ftpes://`` (explicit TLS) or
    ``ftps://`` (implicit TLS) URL; a bare ``host[:port]`` is ftp://."""

    host: str
    port: int
    user: str
    password: str
    implicit_tls: bool = False
    explicit_tls: bool = False

    @classmethod
    def parse(cls, url: str, implicit_tls: bool = False, explicit_tls: bool = False,
              ) -> Target:
        """``--implicit-tls`` reads the URL as ftps://, ``--tls`` an ftp:// one as
        ftpes://: from then on the target's scheme is what the doctor does and shows."""
        u = parse_url(url, default_scheme="ftps" if implicit_tls else "ftp")
        if implicit_tls and u.scheme != "ftps":  # --implicit-tls: read it as ftps://
            u = parse_url("ftps://" + url.strip().split("://", 1)[1])
        return cls(u.host, u.port, u.user or "anonymous",
                   u.password if u.password is not None else "doctor@natftp",
                   u.tls == "implicit", u.tls == "explicit" or (explicit_tls and not u.tls))

    @property
    def tls(self) -> bool:
        """The URL asks for TLS: no USER/PASS may go out in the clear."""
        return self.implicit_tls or self.explicit_tls

    @property
    def scheme(self) -> str:
        return "ftps" if self.implicit_tls else "ftpes" if self.explicit_tls else "ftp"

    def url_with(self, scheme: str) -> str:
        """This target's URL (no user) with another scheme: what a fix tells the user
        to run instead."""
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{h}:{self.port}/"

    def display(self) -> str:
        """The target as reports show it (never with the password)."""
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{self.user}@{h}:{self.port}/"


class SessionError(Exception):
    """A session did not reach a logged-in state; ``reply`` is the refusal, if any."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class Transcript(list[str]):
    """Every line of one control connection, as evidence (``-> USER x``, ``<- 331 ...``;
    passwords masked by :class:`natftp.proto.commands.Command`)."""

    def __call__(self, direction: str, text: str) -> None:
        if direction == ">":
            self.append(f"-> {text}")
        elif direction == "<":
            self.append(f"<- {text}")


# -- observations ----------------------------------------------------------------------

@dataclass
class Resolution:
    addresses: list[str]
    error: str = ""


@dataclass
class Greeting:
    """The session start: its greeting (and 1xx before it), or why there was none."""

    reply: Reply | None = None
    lines: list[str] = field(default_factory=list)
    delay: float = 0.0
    connect_error: str = ""  # the connection (or implicit TLS) failed
    not_tls: bool = False  # implicit TLS met a plain-text answer (WRONG_VERSION_NUMBER)
    error: str = ""  # connected, but no greeting


@dataclass
class Handshake:
    evidence: list[str] = field(default_factory=list)
    refused: Reply | None = None  # AUTH TLS answered with something else than 234
    error: str = ""
    not_tls: bool = False  # implicit TLS met a plain-text answer
    no_greeting: bool = False  # explicit: no greeting (an implicit-TLS port waits for us)
    version: str = ""
    der: bytes | None = None


@dataclass
class Login:
    error: SessionError | None = None
    transcript: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)  # syst, help, feat replies
    features: Features = field(default_factory=Features)


@dataclass
class PasvPair:
    """Two PASV answers on one session: the first's address probed, the second's port
    probed at the control address (a port is used once)."""

    first: Reply | None = None
    advertised: tuple[str, int] | None = None
    advertised_probe: Probe | None = None
    second: Reply | None = None
    second_port: int | None = None
    control_probe: Probe | None = None
    error: str = ""  # the first PASV unusable (refused, unreadable)
    broken: str = ""  # the control connection broke


@dataclass
class Epsv:
    reply: Reply | None = None
    port: int | None = None
    probe: Probe | None = None
    error: str = ""
    broken: str = ""


@dataclass
class Transfer:
    ok: bool
    data: bytes = b""
    evidence: list[str] = field(default_factory=list)
    error: str = ""
    final: Reply | None = None
    source: tuple[str, int] | None = None  # who connected back (active mode)
    broken: bool = False  # control connection state unknown: drop it


@dataclass
class Write:
    name: str
    payload: bytes
    upload: Transfer | None = None
    readback: Transfer | None = None
    delete: Reply | None = None
    broken: str = ""
    evidence: list[str] = field(default_factory=list)


@dataclass
class Sample:
    ports: list[int] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)


class _Observation(Protocol):
    broken: str


Obs = TypeVar("Obs", bound=_Observation)


# -- the prober ---------------------------------------------------------------------------

class Prober:
    """Probes against one target at ``host`` (the address the name resolved to)."""

    def __init__(self, target: Target, timeout: float, allow_plain_login: bool = False,
                 ) -> None:
        self.t = target
        self.timeout = timeout
        #: a target whose URL asks for TLS never gets USER/PASS in the clear, unless the
        #: user allowed it for the plain-vs-TLS comparison (--compare-plain)
        self.allow_plain_login = allow_plain_login or not target.tls
        self.host = target.host  # the address we reached, once connected
        self.last_transcript = Transcript()

    def _context(self) -> ssl.SSLContext:
        # The doctor inspects the certificate itself and reports what is wrong with it.
        return make_context(verify=False)

    async def _connect(self, tls: bool, trace: Transcript | None = None) -> Control:
        return await Control.connect(
            self.host, self.t.port, timeout=self.timeout, connect_timeout=self.timeout,
            implicit_tls=self._context() if self.t.implicit_tls and tls else None,
            trace=trace)

    async def resolve(self) -> Resolution:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(self.t.host, self.t.port, type=socket.SOCK_STREAM),
                self.timeout)
        except (builtins.TimeoutError, OSError) as e:
            return Resolution([], f"getaddrinfo({self.t.host!r}): {e}")
        seen: list[str] = []
        for info in infos:
            a = str(info[4][0])
            if a not in seen:
                seen.append(a)
        return Resolution(seen)

    async def connect(self, addresses: list[str]) -> list[Probe]:
        """TCP connections to the first addresses until one opens."""
        out: list[Probe] = []
        for a in addresses[:3]:
            out.append(await probe(a, self.t.port, self.timeout))
            if out[-1].ok:
                break
        return out

    async def greeting(self) -> Greeting:
        g = Greeting()
        try:
            c = await self._connect(tls=True)
        except FTPError as e:
            g.connect_error = str(e)
            g.not_tls = isinstance(e, NotTLSError)
            return g
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            # --timeout is the wait: a server that looks up our name (reverse DNS, ident)
            # before it greets is reported as slow, or as silent beyond the timeout.
            r = await c.reply(self.timeout)
            while r.kind == 1:
                g.lines.append(q(r))
                r = await c.reply()
            g.lines.append(q(r))
        except FTPError as e:
            c.abort()
            g.error = str(e)
            return g
        g.delay = loop.time() - t0
        g.reply = r
        await c.quit(1.0)
        return g

    async def handshake(self) -> Handshake:
        """TLS on a fresh connection (AUTH TLS, or implicit), for its certificate."""
        h = Handshake()
        try:
            c = await self._connect(tls=True)
            try:
                r = await c.greet()
            except TimeoutError:
                h.no_greeting = True
                c.abort()
                raise
            h.evidence.append(q(r))
            if not self.t.implicit_tls:
                r = await c.cmd("AUTH", "TLS")
                h.evidence.append(f"AUTH TLS -> {q(r)}")
                if r.code != 234:
                    await c.quit(1.0)
                    h.refused = r
                    return h
                await c.start_tls(self._context(), server_hostname=None,
                                  timeout=self.timeout)
        except FTPError as e:
            h.error = str(e)
            h.not_tls = isinstance(e, NotTLSError)
            return h
        obj = c.ssl_object
        h.der = obj.getpeercert(binary_form=True) if obj else None
        h.version = (obj.version() or "?") if obj else "?"
        await c.quit(1.0)
        return h

    async def session(self, tls: bool) -> Control:
        """Connect, read the greeting, AUTH TLS + PBSZ/PROT when ``tls``, log in, TYPE I.
        Raises :class:`SessionError` saying where it stopped."""
        if not tls and not self.allow_plain_login:
            raise SessionError(f"no login without TLS: {self.t.scheme}:// asks for TLS")
        trace = Transcript()
        try:
            c = await self._connect(tls, trace)
        except FTPError as e:
            raise SessionError(f"cannot connect: {e}") from e
        self.last_transcript = trace
        try:
            r = await c.greet(self.timeout)
            if r.code != 220:
                raise SessionError(f"banner {q(r)}", r)
            if tls and not self.t.implicit_tls:
                try:
                    await c.auth_tls(self._context(), server_hostname=None,
                                     timeout=self.timeout)
                except TLSError as e:
                    if e.reply is None:
                        raise
                    raise SessionError(f"AUTH TLS refused: {q(e.reply)}", e.reply) from e
            if tls:
                await c.cmd("PBSZ", "0")
                r = await c.cmd("PROT", "P")
                if r.code != 200:
                    raise SessionError(f"PROT P refused: {q(r)}", r)
            try:
                # Servers delay a refused login (pyftpdlib 3 s, vsftpd 1 s).
                await c.login(self.t.user, self.t.password, pass_timeout=self.timeout + 5)
            except ReplyError as e:
                what = "the server wants an ACCT" if e.code == 332 else "login refused"
                raise SessionError(f"{what}: {q(e.reply)}", e.reply) from e
            await c.cmd("TYPE", "I")
            return c
        except SessionError:
            await c.quit(1.0)
            raise
        except FTPError as e:
            c.abort()
            raise SessionError((str(e) or type(e).__name__) + " after: "
                               + " / ".join(trace[-3:])) from e

    async def login(self, tls: bool) -> Login:
        obs = Login()
        try:
            c = await self.session(tls)
        except SessionError as e:
            obs.error = e
            return obs
        obs.transcript = list(self.last_transcript)
        for name in ("SYST", "HELP"):
            try:
                r = await c.cmd(name)
            except FTPError:
                break
            obs.texts[name.lower()] = r.text
            obs.transcript.append(f"{name} -> {q(r)[:200]}")
        try:
            r = await c.cmd("FEAT")
            obs.texts["feat"] = r.text
            obs.features = parse_feat(r)
        except FTPError:
            pass
        await c.quit(1.0)
        return obs

    async def _pasv(self, c: Control) -> tuple[Reply, tuple[str, int] | None, str]:
        r = await c.cmd("PASV")
        if r.code != 227:
            return r, None, f"PASV refused: {q(r)}"
        try:
            a, p = parse_227(r.text)
        except AddressError as e:
            return r, None, str(e)
        return r, (str(a), p), ""

    async def _observe(self, tls: bool, obs: Obs,
                       body: Callable[[Control, Obs], Awaitable[None]]) -> Obs:
        """Run ``body`` on a fresh session, filling ``obs``; ``obs.broken`` says why it
        stopped when there was no session or the control connection broke."""
        try:
            c = await self.session(tls)
        except SessionError as e:
            obs.broken = f"no session: {e}"
            return obs
        try:
            await body(c, obs)
        except FTPError as e:
            c.abort()
            obs.broken = str(e)
            return obs
        await c.quit(1.0)
        return obs

    async def pasv_pair(self, tls: bool) -> PasvPair:
        async def body(c: Control, obs: PasvPair) -> None:
            obs.first, got, obs.error = await self._pasv(c)
            if got is None:
                return
            obs.advertised = got
            if classify(got[0]) is not AddrClass.UNSPECIFIED:
                obs.advertised_probe = await probe(got[0], got[1], self.timeout)
            obs.second, got2, _ = await self._pasv(c)
            if got2 is not None:
                obs.second_port = got2[1]
                obs.control_probe = await probe(self.host, got2[1], self.timeout)

        return await self._observe(tls, PasvPair(), body)

    async def pasv_once(self, tls: bool) -> tuple[Reply | None, tuple[str, int] | None]:
        """One PASV on a fresh session (plain or TLS): what it advertises."""
        c = await self.session(tls)
        try:
            r, got, _ = await self._pasv(c)
        except FTPError:
            c.abort()
            return None, None
        await c.quit(1.0)
        return r, got

    async def epsv(self, tls: bool) -> Epsv:
        async def body(c: Control, obs: Epsv) -> None:
            obs.reply = await c.cmd("EPSV")
            if obs.reply.code != 229:
                return
            try:
                obs.port = parse_229(obs.reply.text)
            except AddressError as e:
                obs.error = str(e)
                return
            # while the session lives: servers close its passive port with it
            obs.probe = await probe(self.host, obs.port, self.timeout)

        return await self._observe(tls, Epsv(), body)

    async def pasv_sample(self, tls: bool, samples: int) -> Sample | str:
        """PASV ``samples`` times on one session, probing the ports at the control
        address (after two timeouts only the ports are collected). A string: no session."""
        try:
            c = await self.session(tls)
        except SessionError as e:
            return f"no session ({e})"
        obs = Sample()
        try:
            for _ in range(samples):
                r, got, _ = await self._pasv(c)
                if got is None:
                    obs.evidence.append(f"PASV -> {q(r)}")
                    break
                obs.ports.append(got[1])
                if sum(p.status == "timeout" for p in obs.probes) >= 2:
                    continue  # enough evidence; keep sampling ports only
                obs.probes.append(await probe(self.host, got[1], min(self.timeout, 2.0)))
        except FTPError as e:
            c.abort()
            obs.evidence.append(str(e))
        else:
            await c.quit(1.0)
        return obs

    # -- transfers ----------------------------------------------------------------------

    async def transfer_session(self, tls: bool, verb: str, arg: str, mode: str,
                               reuse: bool = False) -> Transfer | str:
        """A fresh session and one transfer on it; a string when no session opened."""
        try:
            c = await self.session(tls)
        except SessionError as e:
            return f"no session: {e}"
        tr = await self.transfer(c, verb, arg, mode, reuse=reuse)
        if tr.broken:
            c.abort()
        else:
            await c.quit(1.0)
        return tr

    async def write(self, tls: bool, mode: str, name: str, payload: bytes,
                    reuse: bool) -> Write:
        """Upload, read back and delete a small file on one session."""
        async def body(c: Control, w: Write) -> None:
            w.upload = await self.transfer(c, "STOR", name, mode, upload=payload, reuse=reuse)
            w.evidence.extend(w.upload.evidence)
            if not w.upload.ok:
                if w.upload.broken:
                    c.abort()
                return
            w.readback = await self.transfer(c, "RETR", name, mode, reuse=reuse)
            w.evidence.extend(w.readback.evidence)
            w.delete = await c.cmd("DELE", name)
            w.evidence.append(f"DELE {name} -> {q(w.delete)}")

        return await self._observe(tls, Write(name, payload), body)

    async def transfer(self, c: Control, verb: str, arg: str, mode: str, *,
                       upload: bytes | None = None, reuse: bool = False) -> Transfer:
        """One data transfer over a mode: epsv, pasv, pasv-control, eprt, port."""
        tr = Transfer(ok=False)
        ev = tr.evidence
        tls = c.data_tls(reuse=reuse)
        try:
            if mode in ("eprt", "port"):
                return await self._active(c, verb, arg, mode, tr, upload, tls)
            if mode == "epsv":
                r = await c.cmd("EPSV")
                ev.append(f"EPSV -> {q(r)}")
                if r.code != 229:
                    tr.error = f"EPSV refused: {q(r)}"
                    return tr
                host, port = self.host, parse_229(r.text)
            else:
                r, got, err = await self._pasv(c)
                ev.append(f"PASV -> {q(r)}")
                if got is None:
                    tr.error = err
                    return tr
                host = got[0] if mode == "pasv" else self.host
                port = got[1]
            try:
                sock = await dial(host, port, self.timeout)
            except DialError as e:
                tr.error = f"data connection to {host}:{port}: {e.status} ({e.detail})"
                ev.append(tr.error)
                tr.broken = True
                return tr
            ev.append(f"data connection to {host}:{port} open")
            dr, dw = await streams(sock, timeout=self.timeout)
            await c.send(verb, arg)
            try:
                pre = await c.reply()
            except FTPError:
                await close_writer(dw)
                raise
            ev.append(f"{verb} {arg} -> {q(pre)}".replace("  ", " "))
            if pre.kind != 1:
                await close_writer(dw)
                tr.final = pre
                tr.error = f"{verb} refused: {q(pre)}"
                return tr
            return await self._move(c, verb, dr, dw, tr, upload, tls)
        except (FTPError, AddressError) as e:
            tr.error = str(e)
            tr.broken = True
            ev.append(tr.error)
            return tr

    async def _move(self, c: Control, verb: str, dr: asyncio.StreamReader,
                    dw: asyncio.StreamWriter, tr: Transfer, upload: bytes | None,
                    tls: ssl.SSLContext | None) -> Transfer:
        """The bytes of a transfer whose 1xx came, then its final reply."""
        try:
            if tls is not None:
                await start_tls(dw, tls, server_hostname=None, timeout=self.timeout)
            if upload is not None:
                dw.write(upload)
                await asyncio.wait_for(dw.drain(), self.timeout)
                if dw.can_write_eof():
                    dw.write_eof()
            else:
                tr.data = await read_all(dr, self.timeout * 2)
        except (builtins.TimeoutError, OSError, ssl.SSLError, FTPError) as e:
            tr.error = f"data transfer failed: {e}"
            tr.evidence.append(tr.error)
        finally:
            await close_writer(dw)
        final = await c.reply(self.timeout * 2)
        tr.final = final
        n = len(tr.data) if upload is None else len(upload)
        tr.evidence.append(f"-> {q(final)} ({n} bytes)")
        if final.kind == 2 and not tr.error:
            tr.ok = True
        elif not tr.error:
            tr.error = f"{verb} failed: {q(final)}"
        return tr

    async def _active(self, c: Control, verb: str, arg: str, mode: str, tr: Transfer,
                      upload: bytes | None, tls: ssl.SSLContext | None) -> Transfer:
        ev = tr.evidence
        local_ip = c.local[0]
        listener = ActiveListener.open(local_ip)
        lport = listener.port
        get_conn = asyncio.ensure_future(listener.accept(self.timeout * 3))
        get_reply: asyncio.Future[Reply] | None = None
        try:
            arg_ = (format_eprt_arg(local_ip, lport) if mode == "eprt"
                    else format_port_arg(local_ip, lport))
            try:
                r = await c.cmd(mode.upper(), arg_)
            except builtins.TimeoutError:
                tr.broken = True
                tr.error = (f"no reply to {mode.upper()} within {self.timeout:g} s and no "
                            f"connection to {local_ip}:{lport} (this server connects back "
                            "as soon as it gets the command)")
                ev.append(f"{mode.upper()} {arg_} -> (no reply)")
                ev.append(tr.error)
                return tr
            ev.append(f"{mode.upper()} {arg_} -> {q(r)}")
            if r.code != 200:
                tr.error = f"refused: {q(r)}"
                return tr
            await c.send(verb, arg)
            get_reply = asyncio.ensure_future(c.reply())
            done, _ = await asyncio.wait({get_conn, get_reply}, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            pre: Reply | None = None
            if get_reply in done:
                pre = get_reply.result()
                ev.append(f"{verb} -> {q(pre)}")
                if pre.kind != 1:
                    tr.final = pre
                    tr.error = f"the server could not connect back: {q(pre)}"
                    return tr
                if get_conn not in done:
                    await asyncio.wait({get_conn}, timeout=self.timeout)
            if not get_conn.done() or get_conn.exception() is not None:
                tr.broken = True
                tr.error = (f"no connection from the server to {local_ip}:{lport} "
                            f"within {self.timeout:g} s")
                ev.append(tr.error)
                return tr
            conn, peer = get_conn.result()
            tr.source = peer
            ev.append(f"the server connected from {peer[0]}:{peer[1]}")
            if pre is None:
                pre = await get_reply
                ev.append(f"{verb} -> {q(pre)}")
            if pre.kind != 1:
                conn.close()
                tr.final = pre
                tr.error = f"{verb} refused: {q(pre)}"
                return tr
            dr, dw = await streams(conn, timeout=self.timeout)
            return await self._move(c, verb, dr, dw, tr, upload, tls)
        except (builtins.TimeoutError, FTPError, OSError, ssl.SSLError) as e:
            tr.error = str(e) or type(e).__name__
            tr.broken = True
            ev.append(tr.error)
            return tr
        finally:
            for fut in (get_conn, get_reply):
                if fut is not None and not fut.done():
                    fut.cancel()
            listener.close()
