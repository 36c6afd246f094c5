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

from natftp.gateway.ports import PortPool
from natftp.gateway.session import Session
from natftp.nat.policy import AdvertisePolicy, Override
from natftp.proto.replies import Reply

log = logging.getLogger("natftp.gateway")

UpstreamMode = Literal["auto", "passive", "active"]


def parse_hostport(text: str, what: str = "address") -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{what} {text!r}: expected [IPV6]:PORT")
        port_s = rest[1:]
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{what} {text!r}: expected HOST:PORT")
    if not port_s.isdigit() or not 0 < int(port_s) <= 65535:
        raise ValueError(f"{what} {text!r}: port must be 1-65535")
    return host, int(port_s)


def parse_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        raise ValueError(f"passive ports {text!r}: expected LOW-HIGH, e.g. 50000-50100")
    lo, hi = int(low), int(high)
    if not 1024 <= lo <= hi <= 65535:
        raise ValueError(f"passive ports {text!r}: need 1024 <= LOW <= HIGH <= 65535")
    return lo, hi


@dataclass
class GatewayConfig:
    listen: tuple[str, int]
    upstream: tuple[str, int]
    masquerade: str | None = None
    overrides: Sequence[Override] = ()
    passive_ports: tuple[int, int] = (0, 0)
    implicit_listen: tuple[str, int] | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls: bool = True  # terminate TLS (self-signed certificate when none given)
    require_tls: bool = False
    upstream_tls: bool = False
    upstream_mode: UpstreamMode = "auto"
    connect_timeout: float = 10.0
    data_timeout: float = 30.0
    idle_timeout: float = 300.0
    max_sessions: int = 200
    max_line: int = 4096
    zero_copy: bool = True
    local_networks: Sequence[object] | None = field(default=None)


class Gateway:
    def __init__(self, cfg: GatewayConfig) -> None:
        from natftp.nat.localnets import local_networks

        self.cfg = cfg
        self.policy = AdvertisePolicy(cfg.masquerade, tuple(cfg.overrides),
                                      local_networks=local_networks())
        self.ports = PortPool(*cfg.passive_ports)
        self.upstream_ports = PortPool(0, 0)
        self.tls_ctx: ssl.SSLContext | None = None
        self.tls_note = "TLS off"
        if cfg.tls or cfg.implicit_listen or cfg.tls_cert:
            from natftp.gateway.tls import server_context

            self.tls_ctx, self.tls_note = server_context(cfg.tls_cert, cfg.tls_key)
        self.sessions: set[asyncio.Task[None]] = set()
        self.servers: list[asyncio.base_events.Server] = []

    @property
    def addresses(self) -> list[tuple[str, int]]:
        out = []
        for srv in self.servers:
            for s in srv.sockets:
                a = s.getsockname()
                out.append((a[0], a[1]))
        return out

    async def start(self) -> None:
        host, port = self.cfg.listen
        self.servers.append(await asyncio.start_server(
            self._plain, host, port, reuse_address=True, limit=1 << 16))
        if self.cfg.implicit_listen:
            assert self.tls_ctx is not None
            ih, ip_ = self.cfg.implicit_listen
            self.servers.append(await asyncio.start_server(
                self._implicit, ih, ip_, ssl=self.tls_ctx, reuse_address=True,
                ssl_handshake_timeout=self.cfg.connect_timeout, limit=1 << 16))
        log.info("gateway listening on %s -> upstream %s:%s, masquerade=%s, passive ports "
                 "%s, upstream mode %s%s, %s", ", ".join(f"{h}:{p}" for h, p in self.addresses),
                 self.cfg.upstream[0], self.cfg.upstream[1], self.cfg.masquerade or "-",
                 "{}-{}".format(*self.cfg.passive_ports) if self.cfg.passive_ports[0] else "any",
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
        finally:
            self.sessions.discard(task)

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.gather(*(s.serve_forever() for s in self.servers))
        finally:
            await self.close()

    async def close(self) -> None:
        for s in self.servers:
            s.close()
        for t in list(self.sessions):
            t.cancel()
        for s in self.servers:
            with contextlib.suppress(Exception):
                await s.wait_closed()
