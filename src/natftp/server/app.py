"""The server: listening sockets, the shared state sessions use, start and stop.

In-process use::

    cfg = natftp.server.config.load("natftp.toml")      # or config.from_dict({...})
    server = Server(cfg)
    bound = await server.start()     # [ListenAddress(...)] actually bound (port 0 -> real)
    ...
    await server.stop()              # aborts transfers, removes partial uploads
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from natftp import logsetup
from natftp.nat import resolver
from natftp.nat.localnets import local_networks
from natftp.nat.policy import AdvertisePolicy, UnreachableWarnings
from natftp.nat.ports import PortPool, listen_socket
from natftp.proto.addr import IPAddress
from natftp.server import data, guard, privs
from natftp.server.config import (
    ConfigError,
    ListenAddress,
    ServerConfig,
    needs_restart,
    unwritable,
)
from natftp.server.guard import THROTTLE, Bans, PasswordChecks
from natftp.server.session import Session
from natftp.server.stats import Stats
from natftp.server.tls import CertStore
from natftp.server.xferlog import XferLog
from natftp.server.zeroconf import ZeroConf
from natftp.storage import local
from natftp.storage.s3 import S3Backend, S3StorageError

if TYPE_CHECKING:
    from natftp.server.handlers import Result
    from natftp.server.status import StatusServer

log = logging.getLogger("natftp.server")

#: a passive port waiting this long for its connection may be taken back when the pool
#: is exhausted (see Server.reclaim_waiting)
RECLAIM_AFTER = 2.0


def _expire_all(store: local.LocalStorage, vpaths: list[str], age: float) -> list[str]:
    return [v for v in vpaths if store.expire_partial(v, age)]


def _check_access(cfg: ServerConfig) -> None:
    """After dropping privileges (at start, and for a reload's new homes): ROOT and every
    home must be reachable by ``run_as`` (on disk: with object storage, homes are key
    prefixes)."""
    if cfg.storage.backend != "local":
        return
    homes = [cfg.root, *(u.home for u in cfg.users)]
    if cfg.anonymous.home is not None:
        homes.append(cfg.anonymous.home)
    for home in homes:
        if not os.access(home, os.R_OK | os.X_OK):
            raise ConfigError("run_as", str(cfg.run_as), f"that user cannot read {home}",
                              f"give it access (chown/chmod/setfacl on {home}) or run "
                              "as a user who has it")


def _is_any(host: str) -> bool:
    return ipaddress.ip_address(host.split("%")[0]).is_unspecified


def masquerade_unresolved(host: str | None, why: str) -> ConfigError:
    """The start-up error for a masquerade hostname that resolves nowhere (``serve`` and
    ``serve --explain`` alike): serving would tell every client outside an address it
    cannot reach."""
    fix = ('give the public IP address or a hostname that resolves, "auto" to discover '
           'the address, or "off"')
    if str(host).lower() in ("yes", "on", "true", "enabled"):
        fix = ('did you mean "auto" (discover the public address)? Else give the public '
               'IP address or a hostname that resolves, or "off"')
    return ConfigError("nat.masquerade", host, f"the hostname does not resolve ({why}); "
                       "clients outside would be sent nowhere", fix)


class ReloadRefused(Exception):
    """SIGHUP: the new configuration was not applied (``str(e)`` says why); the running
    one stays, whole."""


class Server:
    """An FTP server for one :class:`ServerConfig`."""

    def __init__(self, config: ServerConfig, *,
                 resolve: Callable[[str], Awaitable[list[IPAddress]]] | None = None,
                 ) -> None:
        self.config = config
        self.policy = AdvertisePolicy(config.nat.masquerade, config.nat.overrides,
                                      local_networks())
        self.pool = PortPool(config.passive_ports, config.nat.advertised_ports)
        self.sessions: set[Session] = set()
        #: sessions holding a kept passive listening socket, oldest first
        self.spares: dict[Session, None] = {}
        #: passive listeners waiting for their data connection, oldest first, and how
        #: many each client address has (limits.max_passive_per_ip)
        self.waiting: dict[data.PassiveListener, IPAddress] = {}
        self.waiting_per_ip: Counter[IPAddress] = Counter()
        self._per_ip: Counter[IPAddress] = Counter()
        self._unreachable = UnreachableWarnings()
        #: failed logins and the bans they cause ([limits] ban_*): ``bans.active()``
        self.bans = Bans(config.limits)
        #: argon2 checks in their own bounded pool (limits.login_workers/login_queue)
        self.passwords = PasswordChecks(config.limits, config.users)
        #: events counted rather than logged: "reset_at_accept" (a connection reset
        #: before it could be served)
        self.counts: Counter[str] = Counter()
        #: rate limit of per-connection warnings (its ``suppressed`` counts by kind)
        self.throttle = THROTTLE
        #: threads that read directories for listings (made on first use)
        self._list_pool: ThreadPoolExecutor | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._sid = 0
        self._resolve = resolve or resolver.system_resolver
        self.bound: list[ListenAddress] = []
        #: nat.masquerade = "auto" / nat.port_mapping = "auto" (issue 8)
        self.zeroconf = ZeroConf(self)
        #: implicit-TLS listeners actually bound
        self.bound_implicit: list[ListenAddress] = []
        #: what the command table may offer: "tls" (AUTH/PBSZ/PROT), "ccc"
        self.caps: frozenset[str] = frozenset(
            (("tls",) if config.tls.enabled else ()) +
            (("ccc",) if config.tls.enabled and config.tls.ccc else ()))
        self.certs: CertStore | None = CertStore(config.tls) if config.tls.enabled else None
        #: passive data connections relayed by trusted balancers ([proxy_protocol])
        self.relay: data.Relay | None = (
            data.Relay(config.proxy_protocol, config.timeouts.data)
            if config.proxy_protocol.trusted else None)
        #: interrupted uploads kept to be resumed (virtual paths from ROOT), expired
        #: after uploads.partial_max_age
        self.partials: dict[str, None] = {}
        #: counters for metrics and the status page (issue 20; plain ints, always kept)
        self.stats = Stats()
        #: [log] xferlog, opened by start()
        self.xferlog: XferLog | None = None
        #: [status] listen: the status page and /metrics, started by start()
        self.status: StatusServer | None = None
        self.bound_status: ListenAddress | None = None
        #: SIGHUP reloads: (ok, failed), and when the last one was applied
        self.reloads = [0, 0]
        self.reloaded_at: float | None = None
        self._refresher: asyncio.Task[None] | None = None
        #: the bucket when [storage] backend = "s3" (one client, shared by the sessions)
        self.objects: S3Backend | None = (
            S3Backend(config.storage.s3) if config.storage.s3 is not None else None)
        #: the handlers that replace the table's for a session in the bucket, by command
        #: name (natftp.server.objstore): loaded by a server with a bucket only, and here,
        #: before start() drops privileges
        self.object_handlers: Mapping[str, Callable[[Session, str], Result]] = {}
        if self.objects is not None:
            from natftp.server.objstore import HANDLERS

            self.object_handlers = HANDLERS
        #: set by start(); sessions exist only after it
        self.loop: asyncio.AbstractEventLoop

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> list[ListenAddress]:
        """Bind every listen address and start accepting; returns what was bound.

        Raises :class:`ConfigError` when ``active.source_port`` cannot be bound, when
        root would serve beyond loopback without ``run_as`` or ``allow_root``, or when
        ``run_as`` cannot read ROOT; ``OSError`` when a listen address cannot be bound.
        With ``run_as`` the privileges are dropped for good once everything is bound.
        """
        self.loop = asyncio.get_running_loop()
        cfg = self.config
        privs.check_root(cfg.run_as, cfg.allow_root, cfg.listen + cfg.tls.listen_implicit)
        if self.certs is not None:
            self.certs.load()  # ConfigError: missing, expired, mismatched...
        err = data.check_source_port(cfg.active.source_port)
        if err is not None:
            raise ConfigError("active.source_port", cfg.active.source_port,
                              f"cannot bind it ({err})",
                              "run with CAP_NET_BIND_SERVICE (e.g. setcap "
                              "cap_net_bind_service=+ep on the Python binary) or as root, "
                              "or set active.source_port = 0")
        why = await resolver.resolve_at_start(self.policy, self._resolve)
        if why is not None:
            raise masquerade_unresolved(cfg.nat.masquerade, why)
        if self.objects is not None:
            await self._check_bucket(self.objects)
        await self._follow()
        if cfg.log.xferlog is not None:
            try:
                self.xferlog = XferLog(cfg.log.xferlog)
            except OSError as e:
                raise unwritable("log.xferlog", cfg.log.xferlog, e) from None
        v4_any_ports = {la.port for la in cfg.listen
                        if ":" not in la.host and _is_any(la.host) and la.port}
        try:
            for la in cfg.listen:
                sock = self._listen_socket(la, v4_any_ports)
                srv = await self.loop.create_server(lambda: Session(self), sock=sock,
                                                    backlog=socket.SOMAXCONN)
                self._servers.append(srv)
                name = sock.getsockname()
                self.bound.append(ListenAddress(la.host, int(name[1])))
            v4_any_implicit = {la.port for la in cfg.tls.listen_implicit
                               if ":" not in la.host and _is_any(la.host) and la.port}
            for la in cfg.tls.listen_implicit:
                sock = self._listen_socket(la, v4_any_implicit)
                srv = await self.loop.create_server(lambda: Session(self, implicit=True),
                                                    sock=sock, backlog=1024)
                self._servers.append(srv)
                self.bound_implicit.append(ListenAddress(la.host, int(sock.getsockname()[1])))
            if cfg.status.listen is not None:
                from natftp.server.status import StatusServer

                self.status = StatusServer(self)
                self.bound_status = await self.status.start(cfg.status.listen)
            self.zeroconf.load_clients()
            if cfg.run_as is not None:
                try:
                    done = privs.drop(cfg.run_as,
                                      keep_bind=0 < cfg.active.source_port < 1024)
                except OSError as e:
                    raise ConfigError("run_as", str(cfg.run_as), f"dropping privileges "
                                      f"failed ({e.strerror or e})", "run natftp as root "
                                      "on Linux to use run_as") from None
                log.info("privileges dropped: %s", done)
                _check_access(cfg)
            elif os.geteuid() == 0 and cfg.allow_root:
                log.warning("serving as root (allow_root = true): every file operation "
                            "runs with root's rights; prefer run_as = \"USER[:GROUP]\"")
        except BaseException:
            await self.stop()
            raise
        self._start_housekeeping()
        # --open-router maps the implicit-TLS ports too: they are control ports as well
        self.zeroconf.start([la.port for la in self.bound + self.bound_implicit])
        return list(self.bound)

    @staticmethod
    async def _check_bucket(objects: S3Backend) -> None:
        """The bucket exists and the keys may list it, or a ConfigError with the fix."""
        st = objects.settings
        try:
            await objects.check()
        except S3StorageError as e:
            text = str(e)
            if "does not exist" in text:
                fix = (f"create the bucket {st.bucket!r} on {st.endpoint or 'AWS'}, or "
                       "name an existing one (--storage s3://BUCKET, s3.bucket)")
            elif "credentials" in text or "access denied" in text:
                fix = ("give keys that may list the bucket: AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY, AWS_PROFILE / s3.profile, or "
                       "s3.access_key_id and s3.secret_access_key")
            elif "cannot reach" in text:
                fix = ("check s3.endpoint (--s3-endpoint): the URL of a running S3 "
                       "service, with its port")
            else:
                fix = "check the [storage] s3.* settings (docs/server.md)"
            raise ConfigError("storage.s3.bucket", st.bucket,
                              f"{st.describe()}: {text}", fix) from None

    # -- interrupted uploads -------------------------------------------------------------

    def _start_housekeeping(self) -> None:
        task = self.loop.create_task(self._partials_loop() if self.objects is None else
                                     self._kept_objects_loop(self.objects))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _partials_loop(self) -> None:
        """At start, remove upload files under ROOT older than uploads.partial_max_age
        (a killed server's, abandoned ones); then expire the kept ones as they age. In a
        worker thread: a big tree takes a while to walk."""
        age = self.config.uploads.partial_max_age
        root = str(self.config.root)
        try:
            removed, kept = await self.loop.run_in_executor(None, local.sweep, root, age)
        except OSError as e:
            log.warning("uploads: could not look for old upload files under %s: %s", root,
                        e.strerror or e)
            removed, kept = 0, []
        if removed:
            log.info("uploads: removed %d upload file(s) older than %g s "
                     "(uploads.partial_max_age)", removed, age)
        for v in kept:
            self.partials[v] = None
        store = local.LocalStorage(root)
        while True:
            # read at every round: uploads.partial_max_age changes on SIGHUP (0: nothing
            # is kept any more, and what was kept goes at the next round)
            await asyncio.sleep(min(max(age / 4, 1.0), 3600.0) if age else 60.0)
            age = self.config.uploads.partial_max_age
            todo = list(self.partials)
            if not todo:
                continue
            gone = await self.loop.run_in_executor(None, _expire_all, store, todo, age)
            for v in gone:
                self.partials.pop(v, None)
            if gone:
                log.info("uploads: removed %d interrupted upload(s) not resumed within %g s "
                         "(uploads.partial_max_age)", len(gone), age)

    async def _kept_objects_loop(self, objects: S3Backend) -> None:
        """Object storage: abort the kept uploads older than uploads.partial_max_age
        (all of them when it is 0), at start and then as they age. The state lives in
        the bucket, so this also finds those a killed server or another node kept."""
        while True:
            # read at every round: uploads.partial_max_age changes on SIGHUP
            age = self.config.uploads.partial_max_age
            try:
                gone = await objects.sweep(age)
            except S3StorageError as e:
                log.warning("uploads: could not look for old kept uploads: %s", e)
                gone = 0
            if gone:
                log.info("uploads: aborted %d interrupted upload(s) older than %g s "
                         "(uploads.partial_max_age)", gone, age)
            await asyncio.sleep(min(max(age / 4, 1.0), 3600.0) if age else 60.0)

    def keep_partial(self, home: str, vpath: str) -> None:
        """An interrupted upload was kept at ``vpath`` of ``home``: expire it later."""
        root = str(self.config.root).rstrip("/")
        self.partials[home[len(root):] + vpath] = None

    def _listen_socket(self, la: ListenAddress, v4_any_ports: set[int]) -> socket.socket:
        # [::] alone is dual-stack; with 0.0.0.0 on the same port it is v6-only
        return listen_socket(la.host, la.port, dual_stack=la.port not in v4_any_ports)

    def describe(self, la: ListenAddress) -> str:
        if ":" in la.host and _is_any(la.host):
            group = self.bound_implicit if la in self.bound_implicit else self.bound
            v4 = la.port in {x.port for x in group if ":" not in x.host and
                             _is_any(x.host)}
            return f"{la} (IPv6 only)" if v4 else f"{la} (IPv4 and IPv6)"
        return f"{la} (IPv{6 if ':' in la.host else 4})"

    async def serve_forever(self) -> None:
        await asyncio.gather(*(s.serve_forever() for s in self._servers))

    async def stop(self, why: str = "stopping") -> None:
        """Stop listening, abort transfers (partial uploads removed), close sessions."""
        for srv in self._servers:
            srv.close()
        busy = []
        for s in list(self.sessions):
            if s.busy is not None:
                busy.append(s.busy)
            s.shutdown(why)
        for t in list(self._tasks):
            t.cancel()
        if busy:
            await asyncio.wait(busy, timeout=5)
        await self.zeroconf.stop()
        if self.objects is not None:
            await self.objects.close()
        self._servers.clear()
        if self.status is not None:
            await self.status.stop()
            self.status = None
        await asyncio.sleep(0)
        if self.certs is not None:
            self.certs.close()
        self.passwords.close()
        if self._list_pool is not None:
            self._list_pool.shutdown(wait=False, cancel_futures=True)
            self._list_pool = None
        if self.xferlog is not None:
            self.xferlog.close()
            self.xferlog = None

    async def _follow(self) -> None:
        """A masquerade hostname: resolved now, then kept current by a task of ours."""
        task = await resolver.follow(self.policy, self.config.nat.refresh_interval,
                                     self._resolve)
        self._refresher = task
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def reload(self, new: ServerConfig) -> list[str]:
        """SIGHUP: make ``new`` the running configuration; what changed, in words.

        All or nothing: :class:`ReloadRefused` (a key only a restart can change, a new
        certificate or a log file that cannot be read, a home ``run_as`` cannot read)
        leaves the running configuration whole. An unchanged ``[tls]`` has its files read
        again; when that fails, the certificate in use stays (logged) and the rest of the
        file applies. Bans and password checks take the new limits in place
        (:meth:`_reload_guard`). Sessions keep going: a logged-in session keeps the user,
        home and permissions it logged in with; everything read per command (limits,
        timeouts, TLS requirements, the banner, the passive address policy) applies at
        once, and new logins see the new users and passwords.
        """
        old = self.config
        blocked = needs_restart(old, new)
        if blocked:
            raise ReloadRefused("these keys need a restart: " + "; ".join(blocked) +
                                " (restart natftp to apply them, or undo them to reload "
                                "the rest)")
        certs = None
        cert_error: ConfigError | None = None
        xferlog = self.xferlog
        try:
            if new.run_as is not None:
                _check_access(new)  # a new home the dropped user cannot read
            if (new.nat.masquerade != old.nat.masquerade and
                    AdvertisePolicy(new.nat.masquerade).masquerade_is_hostname):
                # as at start: a name that resolves nowhere is refused, not served
                probe = AdvertisePolicy(new.nat.masquerade)
                why = await resolver.resolve_at_start(probe, self._resolve)
                if why is not None:
                    raise masquerade_unresolved(new.nat.masquerade, why)
            if new.tls.enabled:
                certs = CertStore(new.tls)
                try:
                    certs.load()
                except ConfigError as e:
                    certs = None
                    if new.tls != old.tls:  # a new certificate was asked for
                        raise ReloadRefused(f"certificate not reloaded: {e}") from None
                    # the same files, unreadable or broken now (a renewal half done; with
                    # run_as, a key only root can read): the certificate in use stays,
                    # and the rest of the file still applies
                    cert_error = e
            if new.log.xferlog != old.log.xferlog:
                xferlog = None
                if new.log.xferlog is not None:
                    try:
                        xferlog = XferLog(new.log.xferlog)
                    except OSError as e:
                        raise unwritable("log.xferlog", new.log.xferlog, e) from None
            try:
                logsetup.configure(new.log_level.upper(), file=new.log.file,
                                   fmt=new.log.format)
            except OSError as e:
                raise unwritable("log.file", new.log.file, e) from None
        except (ConfigError, ReloadRefused) as e:
            if certs is not None:
                certs.close()
            if xferlog is not None and xferlog is not self.xferlog:
                xferlog.close()
            raise ReloadRefused(str(e)) from None
        changed = _changes(old, new)
        self.config = new
        if certs is not None:
            old_certs, self.certs = self.certs, certs
            if old_certs is not None:
                old_certs.close()
            if certs.info is not None:
                changed.append(f"certificate {certs.info.source}, SHA-256 "
                               f"{certs.info.fingerprint}")
        if cert_error is not None:
            log.error("SIGHUP: certificate not reloaded, the current one stays: %s",
                      cert_error)
        if xferlog is not self.xferlog:
            if self.xferlog is not None:
                self.xferlog.close()
            self.xferlog = xferlog
        self.caps = frozenset((("tls",) if new.tls.enabled else ()) +
                              (("ccc",) if new.tls.enabled and new.tls.ccc else ()))
        pp = new.proxy_protocol
        if not pp.trusted:
            self.relay = None
        elif self.relay is None:
            self.relay = data.Relay(pp, new.timeouts.data)
        else:  # what it learnt about each balancer stays
            self.relay.config, self.relay.data_timeout = pp, new.timeouts.data
        self._reload_guard(new)
        await self._reload_policy(old, new)
        return changed

    def _reload_guard(self, new: ServerConfig) -> None:
        """Bans and password checks take the new [limits] and users in place: failures
        counted and bans in force stay (but those the new settings rule out)."""
        lifted = self.bans.configure(new.limits)
        if lifted:
            why = ("bans are off (limits.ban_after = 0)" if not self.bans.enabled else
                   "now in limits.ban_exempt")
            shown = ", ".join(str(b.address) for b in lifted[:10])
            more = f" and {len(lifted) - 10} more" if len(lifted) > 10 else ""
            log.info("SIGHUP: ban lifted for %s%s: %s", shown, more, why)
        self.passwords.configure(new.limits, new.users)

    async def _reload_policy(self, old: ServerConfig, new: ServerConfig) -> None:
        """The same AdvertisePolicy object is updated (discovery holds it): overrides,
        the host's networks (read again: an interface may have come or gone), and a
        fixed masquerade address or hostname (resolved before the next PASV uses it)."""
        p = self.policy
        p.overrides = new.nat.overrides
        p.local_networks = local_networks()
        if (old.nat.masquerade, old.nat.refresh_interval) == (
                new.nat.masquerade, new.nat.refresh_interval) or new.nat.zeroconf.discover:
            return
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        p.set_masquerade(new.nat.masquerade)
        await self._follow()

    # -- shared state for sessions ---------------------------------------------------

    def certs_context(self) -> ssl.SSLContext:
        assert self.certs is not None
        return self.certs.session_context()

    def next_sid(self) -> str:
        self._sid += 1
        return f"s{self._sid}"

    def admit(self, s: Session) -> tuple[str, str] | None:
        """None to accept a new session, else (kind, the text of a 421)."""
        refusal = self._refusal(s)
        if refusal is not None:
            banned = refusal[0] == "banned"
            self.stats.refused("banned" if banned else "session_limit")
            self.stats.session_ended("banned" if banned else "refused")
            return refusal
        self.sessions.add(s)
        self._per_ip[s.client_ip] += 1
        return None

    def _refusal(self, s: Session) -> tuple[str, str] | None:
        lim = self.config.limits
        ban = self.bans.banned(s.client_ip)
        if ban is not None:
            return "banned", self.ban_text(ban)
        if len(self.sessions) >= lim.max_sessions:
            return "limit", (f"Too many sessions ({lim.max_sessions}, limits.max_sessions); "
                             "try again later.")
        if lim.max_sessions_per_ip and self._per_ip[s.client_ip] >= lim.max_sessions_per_ip:
            return "limit", (f"Too many sessions from {s.client_ip} ({lim.max_sessions_per_ip}, "
                             "limits.max_sessions_per_ip); close some and retry.")
        return None

    def reclaim_spare(self) -> bool:
        """The passive pool is exhausted: close the oldest kept listening socket (its
        session binds a new one at its next PASV/EPSV). False if none is kept."""
        for s in self.spares:
            s.drop_spare()
            return True
        return False

    def ban_text(self, ban: guard.Ban) -> str:
        """The 421 a banned address gets."""
        left = max(1, int(ban.ends - self.loop.time()))
        return (f"Address {ban.address} is refused for {left} s more after "
                f"{ban.failures} failed logins (limits.ban_after); try again later.")

    def login_failed(self, addr: IPAddress) -> guard.Ban | None:
        """Count a failed login from ``addr``; a ban it starts is logged here, once."""
        ban = self.bans.failed(addr)
        if ban is not None:
            log.warning("%s", self.bans.describe(ban))
        return ban

    def list_pool(self) -> ThreadPoolExecutor:
        """Threads for reading directories (a listing never reads one on the loop)."""
        if self._list_pool is None:
            self._list_pool = ThreadPoolExecutor(2, thread_name_prefix="natftp-list")
        return self._list_pool

    def passive_waiting(self, listener: data.PassiveListener, peer: IPAddress) -> None:
        """A passive listener now waits for its data connection."""
        self.waiting[listener] = peer
        self.waiting_per_ip[peer] += 1
        listener.on_done = self._passive_done

    def _passive_done(self, listener: data.PassiveListener) -> None:
        peer = self.waiting.pop(listener, None)
        if peer is not None:
            self.waiting_per_ip[peer] -= 1
            if self.waiting_per_ip[peer] <= 0:
                del self.waiting_per_ip[peer]

    def reclaim_waiting(self) -> bool:
        """The passive pool is exhausted: give back the port of the listener that has
        waited longest for a connection, if it waited more than RECLAIM_AFTER seconds
        (a client connects within milliseconds of 227/229; one that has not after that
        long is gone, or holding ports on purpose). False if none qualifies."""
        now = self.loop.time()
        for listener in self.waiting:
            if now - listener.born < RECLAIM_AFTER:
                return False
            listener.reclaim(f"its passive port {listener.port} was given to another "
                             f"client after {now - listener.born:.0f} s without a data "
                             "connection (all of passive.ports were in use); send PASV "
                             "or EPSV and connect at once")
            return True
        return False

    def release(self, s: Session) -> None:
        self.sessions.discard(s)
        self._per_ip[s.client_ip] -= 1
        if self._per_ip[s.client_ip] <= 0:
            del self._per_ip[s.client_ip]

    def warn_unreachable(self, peer: IPAddress, told: IPAddress, why: str | None = None
                         ) -> None:
        """S2: once per client network, say that a public client got a private address.
        ``why``: the policy's reason, when it is not the plain "no masquerade" case (a
        router WAN address that is private, with no STUN server to tell the public one)."""
        net = self._unreachable.first(peer)
        if net is None:
            return
        if why is not None:
            log.warning("PASV: public client %s (network %s) was told %s, which it most "
                        "likely cannot reach: %s", peer, net, told, why)
            return
        pending = (" (public-address discovery, nat.masquerade = auto, has not answered "
                   "yet)" if self.zeroconf.pending else "")
        log.warning("PASV: public client %s (network %s) was told this server's private "
                    "address %s, which it cannot reach from outside%s; set nat.masquerade "
                    "(--masquerade) to the server's public address or hostname", peer, net,
                    told, pending)


def _changes(old: ServerConfig, new: ServerConfig) -> list[str]:
    """What a reload changes, top-level keys and tables, in words (for the log)."""
    out = []
    for f in dataclasses.fields(ServerConfig):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a == b or f.name == "sources":  # where values came from, not a setting
            continue
        if f.name == "users":
            names_a, names_b = {u.name for u in a}, {u.name for u in b}
            parts = [f"+{n}" for n in sorted(names_b - names_a)]
            parts += [f"-{n}" for n in sorted(names_a - names_b)]
            parts += [f"~{u.name}" for u in b if u.name in names_a and u not in a]
            out.append("users " + " ".join(parts))
        elif dataclasses.is_dataclass(a):
            keys = [g.name for g in dataclasses.fields(a) if getattr(a, g.name) !=
                    getattr(b, g.name)]
            out.append(", ".join(f"{f.name}.{k}" for k in keys))
        else:
            out.append(f.name)
    return out
