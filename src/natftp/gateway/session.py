"""One client's control connection through the gateway.

Two pumps share the session:

* the *command pump* reads the client's bytes through :class:`~natftp.proto.commands.
  LineReader`. Ordinary commands go upstream at once (pipelining is kept) and are queued
  in ``self._fifo`` to be matched with their replies. Commands the gateway answers or
  rewrites itself (AUTH/PBSZ/PROT/CCC, PASV/EPSV/PORT/EPRT, bad lines) first wait until
  every earlier reply has reached the client, so replies stay in order.
* the *reply pump* reads upstream replies through :class:`~natftp.proto.replies.
  ReplyParser` (multi-line aware), takes the head of the queue for each final reply,
  rewrites what needs rewriting (FEAT) and forwards. The final reply of a transfer is
  held until the data has been relayed, so a client never sees 226 before the last byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from natftp.ftpio.control import Control
from natftp.ftpio.data import ActiveListener
from natftp.ftpio.errors import FTPError, FTPTimeout
from natftp.ftpio.tls import make_context
from natftp.gateway.channel import DataChannel, Dial, Listen
from natftp.nat.policy import NoUsableAddress
from natftp.nat.ports import bind_passive
from natftp.proto.addr import (
    ActiveTargetRefused,
    AddressError,
    active_target,
    format_227,
    format_229,
    format_eprt_arg,
    format_port_arg,
    ip,
    parse_eprt_arg,
    parse_port_arg,
    passive_target,
)
from natftp.proto.commands import BadLine, Command, LineReader
from natftp.proto.replies import Reply
from natftp.proto.security import auth_mechanism

if TYPE_CHECKING:
    from natftp.gateway.server import Gateway

log = logging.getLogger("natftp.gateway")

TRANSFER = {"RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD"}
DATA_SETUP = {"PASV", "EPSV", "PORT", "EPRT", "LPSV", "LPRT", "SPSV"}
TLS_LOCAL = {"AUTH", "PBSZ", "PROT", "CCC", "ADAT", "MIC", "CONF", "ENC"}


class UpstreamGone(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass
class Pending:
    cmd: Command
    kind: str = "pass"  # pass | capture | feat
    fut: asyncio.Future[Reply] | None = None
    channel: DataChannel | None = None


@dataclass
class Counters:
    commands: int = 0
    transfers: int = 0
    failed_transfers: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)


class Session:
    def __init__(self, gw: Gateway, creader: asyncio.StreamReader,
                 cwriter: asyncio.StreamWriter, implicit: bool) -> None:
        self.gw, self.cfg = gw, gw.cfg
        self.cr, self.cw = creader, cwriter
        peer = cwriter.get_extra_info("peername")
        local = cwriter.get_extra_info("sockname")
        self.client_ip = str(ip(peer[0]))
        self.client_port = peer[1]
        self.local_ip = str(ip(local[0]))
        self.client_tls = implicit
        self.prot_p = False
        self.user = "-"
        #: the upstream control connection (the gateway is its FTP client)
        self.up: Control | None = None
        self.up_ip = ""
        self.up_local_ip = ""
        self._fifo: deque[Pending] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self.channel: DataChannel | None = None  # set up, not used yet
        self.transfer: DataChannel | None = None  # in use by a transfer command
        self.epsv_all = False
        self.quitting = False
        self.end_reason = "client closed"
        self.n = Counters()

    # --- plumbing ---------------------------------------------------------------------

    @property
    def who(self) -> str:
        return f"{self.client_ip}:{self.client_port}"

    async def send(self, reply: Reply) -> None:
        self.cw.write(reply.format())
        await asyncio.wait_for(self.cw.drain(), self.cfg.idle_timeout)

    async def up_send(self, cmd: Command) -> None:
        assert self.up is not None
        try:
            await self.up.send(cmd)
        except FTPError as e:
            raise UpstreamGone(f"upstream: {e}") from None

    async def up_reply(self) -> Reply:
        """The next upstream reply (any code), however long the upstream takes (a
        transfer runs meanwhile); raises UpstreamGone."""
        assert self.up is not None
        try:
            return await self.up.reply(None)
        except FTPError as e:
            raise UpstreamGone(f"upstream: {e}") from None

    # --- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError) as e:
            self.end_reason = f"{type(e).__name__}: {e}"
        finally:
            for ch in (self.channel, self.transfer):
                if ch is not None:
                    ch.abort()
            if self.up is not None:
                self.up.abort()
            self.cw.close()
            dt = time.monotonic() - self.n.started
            log.info("session client=%s upstream=%s:%s user=%s tls=%s seconds=%.1f "
                     "commands=%d transfers=%d failed=%d bytes=%d end=%r",
                     self.who, self.cfg.upstream[0], self.cfg.upstream[1], self.user,
                     "yes" if self.client_tls else "no", dt, self.n.commands,
                     self.n.transfers, self.n.failed_transfers, self.n.bytes,
                     self.end_reason)

    async def _connect_upstream(self) -> bool:
        host, port = self.cfg.upstream
        try:
            self.up = await Control.connect(host, port, timeout=self.cfg.idle_timeout,
                                            connect_timeout=self.cfg.connect_timeout)
        except FTPError as e:
            self.end_reason = f"upstream {host}:{port} unreachable: {e}"
            await self.send(Reply.of(421, f"Gateway cannot reach the FTP server {host} port "
                                     f"{port} ({e}); try again later."))
            return False
        self.up_ip = str(self.up.peer_ip)
        self.up_local_ip = str(self.up.local_ip)
        return True

    async def _run(self) -> None:
        if not await self._connect_upstream():
            return
        assert self.up is not None
        try:
            banner = await self.up.greet(self.cfg.connect_timeout)
            if banner.code == 220 and self.cfg.upstream_tls:
                # AUTH TLS, PBSZ 0 and PROT P toward an FTPS upstream, before any client
                # command. Its certificate is not checked: the upstream is the operator's
                # own server on a private network, usually with a self-signed certificate.
                await self.up.auth_tls(make_context(verify=False),
                                       server_hostname=self.cfg.upstream[0],
                                       timeout=self.cfg.connect_timeout)
                await self.up.protect()
        except FTPError as e:
            why = ("no greeting in time" if isinstance(e, FTPTimeout) else
                   f"upstream: {e}")
            self.end_reason = why
            await self.send(Reply.of(421, f"Gateway: the FTP server did not greet ({why})."))
            return
        await self.send(banner)
        if banner.code != 220:
            self.end_reason = f"upstream refused the session: {banner.code}"
            return
        pumps = [asyncio.ensure_future(self._command_pump()),
                 asyncio.ensure_future(self._reply_pump())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pumps:
                p.cancel()
            for p in pumps:
                with contextlib.suppress(BaseException):
                    await p
            for pend in self._fifo:
                if pend.fut is not None and not pend.fut.done():
                    pend.fut.cancel()

    def _upstream_data_ctx(self) -> ssl.SSLContext | None:
        """The upstream data connections' TLS: the control connection's context, resuming
        its session (vsftpd and ProFTPD require it by default)."""
        return self.up.data_tls(reuse=True) if self.up is not None else None

    # --- reply pump -------------------------------------------------------------------

    async def _reply_pump(self) -> None:
        try:
            while True:
                reply = await self.up_reply()
                if not self._fifo:
                    await self.send(reply)  # unsolicited (e.g. 421 timeout)
                    if reply.code == 421:
                        self.end_reason = f"upstream: {reply.text}"
                        return
                    continue
                head = self._fifo[0]
                if reply.kind == 1:
                    if head.kind != "capture":
                        await self.send(reply)
                    continue
                if head.kind == "capture":
                    self._fifo.popleft()
                    assert head.fut is not None
                    if not head.fut.done():
                        head.fut.set_result(reply)
                    # the command pump writes the client's reply; it waits on _idle
                    # only for *later* commands, so nothing can overtake it
                    if not self._fifo:
                        self._idle.set()
                    continue
                if head.channel is not None:
                    reply = await self._finish_transfer(head, reply)
                elif head.kind == "feat":
                    reply = self.gw.rewrite_feat(reply)
                elif head.cmd.name == "USER" and reply.kind in (2, 3):
                    self.user = head.cmd.arg.strip()[:64] or "-"
                await self.send(reply)
                self._fifo.popleft()
                if not self._fifo:
                    self._idle.set()
                if head.cmd.name == "QUIT" and reply.kind == 2:
                    self.end_reason = "quit"
                    return
        except UpstreamGone as e:
            self.end_reason = e.why
            with contextlib.suppress(Exception):
                await self.send(Reply.of(421, f"Gateway: {e.why}; closing."))

    async def _finish_transfer(self, head: Pending, reply: Reply) -> Reply:
        ch = head.channel
        assert ch is not None
        if reply.kind == 2:
            await ch.wait_delivered()
        await ch.finish()
        if self.transfer is ch:
            self.transfer = None
        self.n.transfers += 1
        self.n.bytes += ch.stats.total
        dt = max(time.monotonic() - ch.stats.started, 1e-6)
        ok = reply.kind == 2 and ch.error is None
        if not ok:
            self.n.failed_transfers += 1
        log.info("transfer client=%s user=%s cmd=%r modes=%r relay=%s bytes=%d seconds=%.2f "
                 "MB/s=%.1f reply=%d%s", self.who, self.user, head.cmd.masked(), ch.label,
                 ch.stats.method or "none", ch.stats.total, dt,
                 ch.stats.total / dt / 1e6, reply.code,
                 f" error={ch.error!r}" if ch.error else "")
        if reply.kind == 2 and ch.error is not None:
            return Reply.of(426, f"Gateway: data connection failed ({ch.error}); the "
                            f"server said: {reply.code} {reply.text}")
        return reply

    # --- command pump -----------------------------------------------------------------

    async def _read_client(self) -> bytes:
        while True:
            try:
                return await asyncio.wait_for(self.cr.read(65536), self.cfg.idle_timeout)
            except TimeoutError:
                if self.transfer is None and self._idle.is_set():
                    self.end_reason = "idle timeout"
                    with contextlib.suppress(Exception):
                        await self.send(Reply.of(421, "Gateway: no command for "
                                                 f"{self.cfg.idle_timeout:g} s; closing."))
                    return b""

    async def _command_pump(self) -> None:
        lines = LineReader(self.cfg.max_line)
        while True:
            data = await self._read_client()
            if not data:
                if self.end_reason == "client closed" and self.quitting:
                    self.end_reason = "quit"
                return
            for ev in lines.feed(data):
                self.n.commands += 1
                if isinstance(ev, BadLine):
                    await self._local(Reply.of(ev.code, ev.reason))
                    continue
                if await self._command(ev):
                    lines = LineReader(self.cfg.max_line)  # TLS started: fresh framing

    async def _drain_replies(self) -> None:
        await self._idle.wait()

    async def _local(self, reply: Reply) -> None:
        await self._drain_replies()
        await self.send(reply)

    async def _forward(self, cmd: Command, kind: str = "pass",
                       channel: DataChannel | None = None) -> Pending:
        pend = Pending(cmd, kind, channel=channel)
        if kind == "capture":
            pend.fut = asyncio.get_running_loop().create_future()
        self._fifo.append(pend)
        self._idle.clear()
        await self.up_send(cmd)
        return pend

    async def _command(self, cmd: Command) -> bool:
        """Handle one command; True when the control connection switched to TLS."""
        name = cmd.name
        if name in TLS_LOCAL:
            return await self._tls_command(cmd)
        if self.cfg.require_tls and not self.client_tls and name in ("USER", "PASS"):
            await self._local(Reply.of(530, "This gateway requires TLS: send AUTH TLS "
                                       "before USER (e.g. curl --ssl-reqd)."))
            return False
        if name in DATA_SETUP:
            await self._drain_replies()
            await self.send(await self._data_setup(cmd))
            return False
        if name in TRANSFER:
            ch, self.channel = self.channel, None
            if ch is not None:
                ch.transfer(cmd.masked())
                self.transfer = ch
            await self._forward(cmd, channel=ch)
            return False
        if name == "ABOR" and self.transfer is not None:
            self.transfer.abort()
        if name == "QUIT":
            self.quitting = True
        await self._forward(cmd, "feat" if name == "FEAT" else "pass")
        return False

    async def _tls_command(self, cmd: Command) -> bool:
        name, arg = cmd.name, cmd.arg.strip().upper()
        ctx = self.gw.tls_ctx
        if name == "AUTH":
            mech = auth_mechanism(arg)
            if mech is None:
                await self._local(Reply.of(504, f"AUTH {arg} is not supported; use AUTH TLS."))
                return False
            if self.client_tls:
                await self._local(Reply.of(503, "TLS is already on for this connection."))
                return False
            if ctx is None:
                await self._local(Reply.of(502, "This gateway does not offer TLS (it was "
                                           "started without --tls, --tls-cert or "
                                           "--upstream-tls)."))
                return False
            await self._drain_replies()
            # Stop reading before the 234 leaves: the ClientHello that answers it must go
            # to the TLS layer, not into the plain-text StreamReader.
            pause = getattr(self.cw.transport, "pause_reading", None)
            if pause is not None:
                pause()
            self.cw.write(Reply.of(234, "Gateway: proceed with TLS negotiation.").format())
            await self.cw.start_tls(ctx, ssl_handshake_timeout=self.cfg.connect_timeout)
            self.client_tls = True
            self.prot_p = mech.prot_p  # AUTH SSL / TLS-P protect data, as in the server
            return True
        if not self.client_tls:
            await self._local(Reply.of(503, f"{name} needs AUTH TLS first."))
            return False
        if name == "PBSZ":
            await self._local(Reply.of(200, "PBSZ=0"))
        elif name == "PROT":
            if arg == "P":
                self.prot_p = True
                await self._local(Reply.of(200, "Protection level set to Private."))
            elif arg == "C":
                self.prot_p = False
                await self._local(Reply.of(200, "Protection level set to Clear."))
            else:
                await self._local(Reply.of(536, f"PROT {arg} not supported; use P or C."))
        elif name == "CCC":
            await self._local(Reply.of(534, "CCC refused: the gateway keeps the control "
                                       "connection encrypted."))
        else:
            await self._local(Reply.of(502, f"{name} is not implemented (RFC 2228 security "
                                       "data exchange is not supported)."))
        return False

    # --- data connections -------------------------------------------------------------

    async def _data_setup(self, cmd: Command) -> Reply:
        name = cmd.name
        if self.channel is not None:
            self.channel.abort()
            self.channel = None
        if name in ("LPSV", "LPRT", "SPSV"):
            return Reply.of(502, f"{name} is not supported; use EPSV or PASV (or EPRT/PORT).")
        client_v6 = ipaddress.ip_address(self.client_ip).version == 6
        if name == "EPSV" and cmd.arg.strip():
            a = cmd.arg.strip().upper()
            if a == "ALL":
                self.epsv_all = True
                return Reply.of(200, "EPSV ALL accepted: only EPSV from now on.")
            want = {"1": 4, "2": 6}.get(a)
            if want is None or want != (6 if client_v6 else 4):
                return Reply.of(522, "Network protocol not supported, use (1)" if not
                                client_v6 else "Network protocol not supported, use (2)")
        if self.epsv_all and name != "EPSV":
            return Reply.of(503, f"{name} refused after EPSV ALL (RFC 2428).")
        client_passive = name in ("PASV", "EPSV")
        # The client's end.
        client_end: Listen | Dial
        advertised = None
        if client_passive:
            if name == "PASV" and client_v6:
                return Reply.of(425, "PASV cannot carry an IPv6 address; use EPSV.")
            if name == "PASV":
                try:
                    advertised = self.gw.policy.advertise(self.local_ip, self.client_ip)
                except NoUsableAddress as e:
                    return Reply.of(425, f"Gateway has no address to advertise ({e}); set "
                                    "--masquerade.")
                if advertised.address.version != 4:
                    return Reply.of(425, f"Gateway would advertise {advertised.address}, not "
                                    "IPv4; use EPSV.")
                if advertised.warn_unreachable:
                    self.gw.warn_unreachable(ip(self.client_ip), advertised.address)
            try:
                listening = self._client_listener()
            except OSError as e:
                return Reply.of(425, f"Gateway cannot open a data port: {e.strerror or e}")
            if listening is None:
                pool = self.gw.ports
                return Reply.of(425, f"Gateway has no free data port: all {pool.size} ports "
                                f"of {pool.describe()} (--passive-ports) are in use; try "
                                "again later.")
            client_end = listening
        else:
            host: ipaddress.IPv4Address | ipaddress.IPv6Address
            try:
                if name == "PORT":
                    host, port = parse_port_arg(cmd.arg)
                else:
                    host, port = parse_eprt_arg(cmd.arg)
                target = active_target(host, port, self.client_ip)
            except ActiveTargetRefused as e:
                if e.kind == "foreign":
                    log.warning("session %s: refused %s to third host %s (FTP bounce)",
                                self.who, name, host)
                return Reply.of(e.code, e.reply_text(name))
            except AddressError as e:
                return Reply.of(501, f"{name} refused: {e}")
            client_end = Dial(str(target), port, "client")
        # The upstream's end.
        try:
            up = await self._upstream_end(name, client_passive)
        except BaseException:
            if isinstance(client_end, Listen):
                client_end.close()
            raise
        if isinstance(up, Reply):
            if isinstance(client_end, Listen):
                client_end.close()
            return up
        up_end, up_label = up
        label = f"client {'passive' if client_passive else 'active'} / upstream {up_label}"
        self.channel = DataChannel(
            client_end, up_end, client_tls=self.gw.tls_ctx if self.prot_p else None,
            upstream_tls=self._upstream_data_ctx(), upstream_hostname=self.cfg.upstream[0],
            timeout=self.cfg.data_timeout, idle=self.cfg.data_timeout,
            zero_copy=self.cfg.zero_copy, label=label)
        if isinstance(client_end, Listen):
            port = self.gw.ports.advertise(client_end.listener.port)
            if name == "PASV":
                assert advertised is not None
                return Reply.of(227, format_227(advertised.address, port))
            return Reply.of(229, format_229(port))
        return Reply.of(200, f"{name} command successful (via the gateway).")

    def _client_listener(self) -> Listen | None:
        """A listening socket for the client on a free port of the gateway's pool (on the
        address the client reached us at); None when the pool is exhausted."""
        pool = self.gw.ports
        local = (self.local_ip, 0, 0, 0) if ":" in self.local_ip else (self.local_ip, 0)
        family = socket.AF_INET6 if ":" in self.local_ip else socket.AF_INET
        bound = bind_passive(pool, family, local)
        if bound is None:
            return None
        sock, port = bound
        return Listen(ActiveListener(sock), self.client_ip, "client",
                      release=lambda: pool.release(port))

    def _upstream_order(self, name: str, client_passive: bool) -> list[str]:
        up_v6 = ipaddress.ip_address(self.up_ip).version == 6
        passive = ["EPSV"] if up_v6 else (["EPSV", "PASV"] if name == "EPSV" else
                                           ["PASV", "EPSV"])
        active = ["EPRT"] if up_v6 else (["EPRT", "PORT"] if name == "EPRT" else
                                          ["PORT", "EPRT"])
        mode = self.cfg.upstream_mode
        if mode == "passive":
            return passive
        if mode == "active":
            return active
        return passive + active if client_passive else active + passive

    async def _upstream_end(self, name: str, client_passive: bool
                            ) -> tuple[Listen | Dial, str] | Reply:
        """Ask the upstream for a data connection, trying the modes in order."""
        refusals: list[str] = []
        for up_cmd in self._upstream_order(name, client_passive):
            lsock = None
            if up_cmd in ("PASV", "EPSV"):
                cmd = Command(up_cmd)
            else:
                try:
                    lsock = ActiveListener.open(self.up_local_ip)
                except OSError as e:
                    refusals.append(f"{up_cmd}: cannot listen ({e})")
                    continue
                port = lsock.port
                arg = (format_port_arg(self.up_local_ip, port) if up_cmd == "PORT"
                       else format_eprt_arg(self.up_local_ip, port))
                cmd = Command(up_cmd, arg)
            try:
                pend = await self._forward(cmd, "capture")
                assert pend.fut is not None
                reply = await pend.fut
            except BaseException:
                if lsock is not None:
                    lsock.close()
                raise
            if reply.kind != 2:
                if lsock is not None:
                    lsock.close()
                refusals.append(f"{up_cmd}: {reply.code} {reply.text}")
                continue
            if lsock is not None:
                return Listen(lsock, self.up_ip, "upstream"), "active"
            try:
                want = 227 if up_cmd == "PASV" else 229
                if reply.code != want:
                    raise AddressError(f"{up_cmd} answered {reply.code}, not {want}")
                # the rule the client follows: 0.0.0.0, a private address we cannot
                # route to, or a third host is replaced by the upstream's own address
                passive = passive_target(reply.code, reply.text, self.up_ip)
                if passive.ignored is not None:
                    log.info("session %s: upstream %s", self.who, passive.note())
            except AddressError as e:
                log.warning("session %s: malformed %s reply from upstream: %s", self.who,
                            up_cmd, e)
                return Reply.of(425, f"Gateway: the FTP server sent a malformed reply to "
                                f"{up_cmd} ({e}); no data connection was made.")
            return Dial(str(passive.host), passive.port, "upstream"), "passive"
        return Reply.of(425, "Gateway: the FTP server refused every data connection mode: "
                        + "; ".join(refusals))
