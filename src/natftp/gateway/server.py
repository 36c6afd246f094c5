"""The gateway process: listeners (plain with AUTH TLS, and optionally implicit TLS), the
session limit, and the shared pieces every session uses (address policy, port pool,
TLS context)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from natftp.gateway.session import Session
from natftp.nat import resolver
from natftp.nat.policy import AdvertisePolicy, Override, UnreachableWarnings
from natftp.nat.ports import PortPool, listen_socket
from natftp.nat.resolver import Resolver
from natftp.proto.addr import IPAddress
from natftp.proto.feat import rewrite_feat
from natftp.proto.hostport import format_hostport
from natftp.proto.replies import Reply
from natftp.proto.security import TLS_FEATURES

log = logging.getLogger("natftp.gateway")

UpstreamMode = Literal["auto", "passive", "active"]


@dataclass
class GatewayConfig:
    listen: tuple[str, int]
    upstream: tuple[str, int]
    masquerade: str | None = None
    overrides: Sequence[Override] = ()
    #: the client-facing passive ports (None: any free port) and, when a NAT in front
    #: translates them, the ports clients are told (same size)
    passive_ports: tuple[int, int] | None = None
    advertised_ports: tuple[int, int] | None = None
    implicit_listen: tuple[str, int] | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: offer AUTH TLS: None = when asked for by a certificate, an implicit listener or
    #: an FTPS upstream (as `natftp serve` does); True = --tls; False = --no-tls
    tls: bool | None = None
    require_tls: bool = False
    upstream_tls: bool = False
    upstream_mode: UpstreamMode = "auto"
    connect_timeout: float = 10.0
    data_timeout: float = 30.0
    idle_timeout: float = 300.0
    max_sessions: int = 200
    max_line: int = 4096
    zero_copy: bool = True
    #: how often a masquerade hostname is resolved again (serve's nat.refresh_interval)
    refresh_interval: float = 300.0
    local_networks: Sequence[object] | None = field(default=None)

    @property
    def offers_tls(self) -> bool:
        if self.tls is not None:
            return self.tls
        return bool(self.tls_cert or self.implicit_listen or self.upstream_tls)


class Gateway:
    def __init__(self, cfg: GatewayConfig, *, resolve: Resolver | None = None) -> None:
        from natftp.nat.localnets import local_networks

        if cfg.tls is False and (cfg.tls_cert or cfg.implicit_listen):
            raise ValueError("--no-tls contradicts --tls-cert and --listen-implicit")
        if cfg.require_tls and not cfg.offers_tls:
            raise ValueError("--require-tls needs TLS: add --tls (or --tls-cert)")
        self.cfg = cfg
        self.policy = AdvertisePolicy(cfg.masquerade, tuple(cfg.overrides),
                                      local_networks=local_networks())
        self.ports = PortPool(cfg.passive_ports, cfg.advertised_ports)
        self.upstream_ports = PortPool()
        self.tls_ctx: ssl.SSLContext | None = None
        self.tls_note = "TLS not offered (--tls to offer it)"
        if cfg.offers_tls:
            from natftp.gateway.tls import server_context

            self.tls_ctx, self.tls_note = server_context(cfg.tls_cert, cfg.tls_key)
        self.sessions: set[asyncio.Task[None]] = set()
        self.servers: list[asyncio.base_events.Server] = []
        self._resolve = resolve or resolver.system_resolver
        self._refresh: asyncio.Task[None] | None = None
        self._unreachable = UnreachableWarnings()

    def rewrite_feat(self, reply: Reply) -> Reply:
        """The upstream's FEAT, with what the gateway answers itself: EPSV and EPRT
        always (it translates modes), AUTH TLS/PBSZ/PROT exactly when it offers TLS
        (whatever the upstream offers: those commands never reach it)."""
        add = ("EPSV", "EPRT", *(TLS_FEATURES if self.tls_ctx is not None else ()))
        return rewrite_feat(reply, add=add, remove=("AUTH", "PBSZ", "PROT", "CCC"))

    def warn_unreachable(self, peer: IPAddress, told: IPAddress) -> None:
        """S2: once per client network, say that a public client got a private address."""
        net = self._unreachable.first(peer)
        if net is None:
            return
        log.warning("PASV: public client %s (network %s) was told the gateway's private "
                    "address %s, which it cannot reach from outside; set --masquerade to "
                    "the gateway's public address or hostname", peer, net, told)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        out = []
        for srv in self.servers:
            for s in srv.sockets:
                a = s.getsockname()
                out.append((a[0], a[1]))
        return out

    async def start(self) -> None:
        self._refresh = await resolver.follow(self.policy, self.cfg.refresh_interval,
                                              self._resolve)
        self.servers.append(await asyncio.start_server(
            self._plain, sock=listen_socket(*self.cfg.listen), limit=1 << 16))
        if self.cfg.implicit_listen:
            assert self.tls_ctx is not None
            self.servers.append(await asyncio.start_server(
                self._implicit, sock=listen_socket(*self.cfg.implicit_listen),
                ssl=self.tls_ctx, ssl_handshake_timeout=self.cfg.connect_timeout,
                limit=1 << 16))
        log.info("gateway listening on %s -> upstream %s, masquerade=%s, passive ports "
                 "%s, upstream mode %s%s, %s",
                 ", ".join(format_hostport(h, p) for h, p in self.addresses),
                 format_hostport(*self.cfg.upstream), self.cfg.masquerade or "-",
                 self.ports.describe(),
                 self.cfg.upstream_mode, ", FTPS upstream" if self.cfg.upstream_tls else "",
                 self.tls_note)

    async def _plain(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await self._session(r, w, implicit=False)

    async def _implicit(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await self._session(r, w, implicit=True)

    async def _session(self, r: asyncio.StreamReader, w: asyncio.StreamWriter,
                       implicit: bool) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self.sessions) >= self.cfg.max_sessions:
            with contextlib.suppress(Exception):
                w.write(Reply.of(421, f"Gateway busy: {self.cfg.max_sessions} sessions "
                                 "(the limit) are open; try again later.").format())
                await asyncio.wait_for(w.drain(), 5)
            w.close()
            log.warning("refused a session from %s: session limit %d reached",
                        w.get_extra_info("peername"), self.cfg.max_sessions)
            return
        sock = w.get_extra_info("socket")
        if sock is not None:  # ABOR arrives as urgent data (ftplib): keep it in the stream
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        self.sessions.add(task)
        try:
            await Session(self, r, w, implicit).run()
        except Exception:  # noqa: BLE001 (one broken session must not stop the gateway)
            log.exception("session crashed")
        except asyncio.CancelledError:
            # close() ends the session; the connection's task then ends normally (asyncio
            # 3.11's stream callback would log a cancelled task as an error)
            pass
        finally:
            self.sessions.discard(task)

    async def close(self) -> None:
        """Stop listening and end every session (each logs its end line)."""
        if self._refresh is not None:
            self._refresh.cancel()
        for s in self.servers:
            s.close()
        sessions = list(self.sessions)
        for t in sessions:
            t.cancel()
        if sessions:
            await asyncio.wait(sessions, timeout=10)
        for s in self.servers:
            with contextlib.suppress(Exception):
                await s.wait_closed()
