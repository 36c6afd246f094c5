"""The status listener (``[status] listen`` / ``--status-listen``, issue 20): the status
page at ``/`` and Prometheus metrics at ``/metrics``, on one HTTP port.

Imported only when configured. The HTTP side is deliberately tiny and runs on the
server's own event loop (no thread, so the page and the metrics read the server's state
between two of its callbacks, never half-updated): ``GET``/``HEAD``, one request per
connection, a 8 KiB request head, 10 s to send it. Anything else gets a plain 4xx.

The page is server-rendered HTML that refreshes itself (``<meta http-equiv=refresh>``,
``status.refresh`` seconds), no script: sessions (user, client, current command,
transfer progress), bans in force (``[limits] ban_*``), what each class of client is
told in a 227 and why (the same policy code as ``natftp serve --explain``), discovery
and router port mappings, recent warnings. It shows user names and client addresses
without asking who is looking, which is why the listener is on loopback unless
configured otherwise; ``docs/operations.md`` shows how to expose it safely.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from natftp.nat.discovery import PortResult
from natftp.proto.addr import ip
from natftp.server import metrics
from natftp.server.config import ListenAddress
from natftp.server.explain import per_class
from natftp.server.stats import WarningRing

if TYPE_CHECKING:
    from natftp.server.app import Server
    from natftp.server.session import Session

log = logging.getLogger("natftp.server")

MAX_HEAD = 8192
HEAD_TIMEOUT = 10.0


class StatusServer:
    """The HTTP listener of one :class:`Server`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.registry = metrics.registry(server)
        self.warnings = WarningRing()
        self._srv: asyncio.base_events.Server | None = None

    async def start(self, la: ListenAddress) -> ListenAddress:
        loop = asyncio.get_running_loop()
        self._srv = await loop.create_server(lambda: _Http(self), la.host, la.port,
                                             reuse_address=True)
        port = int(self._srv.sockets[0].getsockname()[1])
        logging.getLogger().addHandler(self.warnings)
        if not ip(la.host.split("%")[0]).is_loopback:
            log.warning("status page and metrics on %s, beyond loopback: they show user "
                        "names and client addresses to anyone who can connect; firewall "
                        "the port or put an authenticating proxy in front "
                        "(docs/operations.md)", la)
        return ListenAddress(la.host, port)

    async def stop(self) -> None:
        logging.getLogger().removeHandler(self.warnings)
        if self._srv is not None:
            self._srv.close()
            self._srv = None

    def respond(self, method: str, target: str, headers: dict[str, str],
                ) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request."""
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET and HEAD\n"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            body, ctype = metrics.exposition(self.registry, headers.get("accept", ""))
            return 200, ctype, body
        if path in ("/", "/index.html"):
            return 200, "text/html; charset=utf-8", page(self.server, self).encode()
        return 404, "text/plain; charset=utf-8", b"not found: try / or /metrics\n"


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}


class _Http(asyncio.Protocol):
    """One HTTP/1.x request, answered, then the connection is closed."""

    def __init__(self, owner: StatusServer) -> None:
        self.owner = owner
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.timer = asyncio.get_running_loop().call_later(
            HEAD_TIMEOUT, self._send, 408, "text/plain", b"request too slow\n", False)

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._send(431, "text/plain", b"request head too large\n", False)
            return
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._send(400, "text/plain", b"not an HTTP/1.x request\n", False)
            return
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        method, target = parts[0], parts[1]
        try:
            status, ctype, body = self.owner.respond(method, target, headers)
        except Exception:
            log.exception("status page: %s %s failed", method, target[:200])
            status, ctype, body = 500, "text/plain", b"internal error (logged)\n"
        self._send(status, ctype, body, method == "HEAD")

    def _send(self, status: int, ctype: str, body: bytes, head_only: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write((f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                 f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                 "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
                 ).encode("latin-1") + (b"" if head_only else body))
        t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None


# -- the page -------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse}td,th{padding:.25em .7em;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}th{background:#f3f3f3}.num{text-align:right}
.muted{color:#777}.warn{color:#a40}.bar{background:#eee;width:8em;height:.7em;
display:inline-block}.bar i{background:#48c;height:100%;display:block}
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _ago(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _table(head: Iterable[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{_e(empty)}</p>'
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><tr>{th}</tr>{''.join(rows)}</table>"


def _session_row(s: Session, now: float) -> str:
    cmd = s.last_cmd.masked() if s.last_cmd is not None else ""
    if s.xfer is not None:
        verb, what, progress = s.xfer
        secs = max(time.monotonic() - s.xfer_at, 1e-3)
        xfer = (f"{_e(verb)} {_e(what)}: {_e(_size(progress.bytes))} in {secs:.1f} s "
                f"({_e(_size(progress.bytes / secs))}/s)")
    else:
        xfer = '<span class="muted">none</span>'
    tls = _e(s.tls_note) if s.tls_ctx is not None else '<span class="muted">clear</span>'
    idle = s.loop.time() - s.last_active if s.last_active and s.busy is None else 0.0
    user = s.login_name or ""
    # the real client (after a PROXY protocol header), and the balancer it came through
    via = f" via {_e(s.via)}" if s.via is not None else ""
    return (f'<tr class="session" id="session-{_e(s.sid)}" data-user="{_e(user)}" '
            f'data-client="{_e(s.client_ip)}"><td>{_e(s.sid)}</td>'
            f'<td>{_e(user) or "<span class=muted>(not logged in)</span>"}</td>'
            f"<td>{_e(s.client_ip)} port {s.peer_port}{via}</td>"
            f"<td>{_ago(now - s.started)}</td>"
            f"<td>{_ago(idle)}</td><td>{tls}</td><td><code>{_e(cmd)}</code></td>"
            f"<td>{xfer}</td></tr>")


def _nat_rows(server: Server) -> list[str]:
    rows = []
    for c in per_class(server.config, server.policy):
        label, peer = c.client.label, c.client.sample
        if c.decision is None:
            told, why = "-", c.note
            if c.local is not None and peer.version == 6:
                told, why = "(EPSV: port only)", f"{c.note}; data to [{c.local}]"
        else:
            d = c.decision
            told, why = str(d.address), d.reason
            if d.warn_unreachable:
                why += " (WARNING: it probably cannot reach that)"
        rows.append(f'<tr class="nat" data-class="{_e(label)}" data-told="{_e(told)}">'
                    f"<td>{_e(label)}</td><td>{_e(peer)}</td><td>{_e(c.local or '-')}</td>"
                    f"<td><b>{_e(told)}</b></td><td>{_e(why)}</td></tr>")
    return rows


def _mapping_rows(server: Server) -> list[str]:
    """Router port mappings, consecutive ports in the same state as one row."""
    rows: list[str] = []
    group: list[PortResult] = []
    now = time.time()

    def key(r: PortResult) -> tuple[str, str, int | None]:
        return r.state.value, r.protocol or "-", r.lease

    def flush() -> None:
        if not group:
            return
        first, last = group[0].port, group[-1].port
        ports = str(first) if first == last else f"{first}-{last}"
        state, proto, lease = key(group[0])
        ends = [r.expires for r in group if r.expires is not None]
        until = (f"in {_ago(min(ends) - now)}" if ends else
                 "never (permanent)" if lease == 0 else "-")
        rows.append(f'<tr class="mapping"><td>{ports}</td><td>{_e(state)}</td>'
                    f"<td>{_e(proto)}</td><td>{'-' if lease is None else f'{lease} s'}</td>"
                    f"<td>{_e(until)}</td></tr>")
        group.clear()

    for r in server.zeroconf.mappings():
        if group and (group[-1].port != r.port - 1 or key(group[-1]) != key(r)):
            flush()
        group.append(r)
    flush()
    return rows


def _ban_rows(server: Server, now: float) -> list[str]:
    """The bans in force, the one ending last first (the oldest is nearest its end)."""
    rows = []
    for b in sorted(server.bans.active(), key=lambda b: b.until, reverse=True):
        until = datetime.datetime.fromtimestamp(b.until)
        rows.append(f'<tr class="ban" data-address="{_e(b.address)}" '
                    f'data-until="{b.until:.0f}"><td>{_e(b.address)}</td>'
                    f"<td class=num>{b.failures}</td>"
                    f"<td>{datetime.datetime.fromtimestamp(b.since):%Y-%m-%d %H:%M:%S}</td>"
                    f"<td>{until:%Y-%m-%d %H:%M:%S} (in {_ago(b.until - now)})</td></tr>")
    return rows


def page(server: Server, status: StatusServer) -> str:
    """The whole status page, rendered now."""
    cfg, st = server.config, server.stats
    now = time.time()
    up = now - st.started
    listens = ", ".join(server.describe(la) for la in server.bound)
    if server.bound_implicit:
        listens += "; implicit TLS " + ", ".join(str(la) for la in server.bound_implicit)
    pool = server.pool
    ports = f"{pool.describe()}: {pool.in_use} in use"
    if pool.size:
        ports += f", {pool.size - pool.in_use} free"
    tls = "off"
    if server.certs is not None and server.certs.info is not None:
        info = server.certs.info
        tls = (f"on ({info.source}; valid until {info.not_after:%Y-%m-%d}; SHA-256 "
               f"{info.fingerprint})")
    reload_text = "never"
    if server.reloaded_at is not None:
        reload_text = f"{_ago(now - server.reloaded_at)} ago"
    if server.reloads[1]:
        reload_text += f" ({server.reloads[1]} refused since start)"
    sessions = sorted(server.sessions, key=lambda s: s.started)
    srows = [_session_row(s, server.loop.time()) for s in sessions]
    t = st.transfers
    done = sum(n for (_, r), n in t.items() if r == "ok")
    failed = sum(n for (_, r), n in t.items() if r != "ok")
    refusals = ", ".join(f"{k} {v}" for k, v in metrics.refusals(server).items()
                         if v) or "none"
    bans = _ban_rows(server, now)
    lim = cfg.limits
    ban_rule = (f"after {lim.ban_after} failed logins within {lim.ban_window:g} s, for "
                f"{lim.ban_time:g} s" if lim.ban_after else "off (limits.ban_after = 0)")
    pw = server.passwords

    zc = server.zeroconf
    policy = server.policy
    if zc.config.discover:
        found = policy.discovered
        if zc.pending:
            nat = ("nat.masquerade = auto: discovering (clients are told the local "
                   "address until it answers)")
        else:
            nat = "nat.masquerade = auto: " + (found.describe() if found is not None
                                               else "nothing found")
        if zc.result_at is not None:
            nat += f"; last checked {_ago(now - zc.result_at)} ago"
    elif cfg.nat.masquerade is None:
        nat = f"no public address (nat.masquerade not set; {zc.config.reason})"
    elif policy.masquerade_is_hostname:
        nat = f"nat.masquerade = {cfg.nat.masquerade} -> " + (
            ", ".join(map(str, policy.masquerade_addresses)) or "unresolved")
    else:
        nat = f"nat.masquerade = {cfg.nat.masquerade}"
    mapping = _mapping_rows(server)
    warnings = [f'<tr class="warning"><td>{datetime.datetime.fromtimestamp(ts):%H:%M:%S}'
                f'</td><td class="warn">{_e(level)}</td><td>{_e(msg)}</td></tr>'
                for ts, level, msg in reversed(status.warnings.lines)]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{cfg.status.refresh:g}">
<meta name="viewport" content="width=device-width">
<title>natftp status</title><style>{_CSS}</style></head><body>
<h1>natftp status</h1>
<p class="muted">Rendered {datetime.datetime.fromtimestamp(now):%Y-%m-%d %H:%M:%S};
refreshes every {cfg.status.refresh:g} s. Metrics: <a href="/metrics">/metrics</a>.</p>
<table id="server">
<tr><th>Version</th><td>{_e(metrics.version())}</td></tr>
<tr><th>Up</th><td>{_ago(up)}</td></tr>
<tr><th>Listening</th><td>{_e(listens)}</td></tr>
<tr><th>Passive ports</th><td>{_e(ports)}</td></tr>
<tr><th>TLS</th><td>{_e(tls)}</td></tr>
<tr><th>Sessions</th><td>{len(sessions)} open; logins {st.logins['ok']} ok,
{st.logins['failed']} failed</td></tr>
<tr><th>Transfers</th><td>{done} complete, {failed} aborted or failed</td></tr>
<tr><th>Refused</th><td>{_e(refusals)}</td></tr>
<tr><th>Password checks</th><td>{pw.pending} running or waiting (at most
{pw.workers + pw.queue}: limits.login_workers + login_queue)</td></tr>
<tr><th>Bans</th><td>{len(bans)} in force, {server.bans.total} since start; {_e(ban_rule)}
</td></tr>
<tr><th>Configuration</th><td>last reload {_e(reload_text)}</td></tr>
</table>
<h2>Sessions</h2>
{_table(("Id", "User", "Client", "Connected", "Idle", "TLS", "Last command", "Transfer"),
        srows, "No sessions.")}
<h2>Bans in force</h2>
{_table(("Address", "Failed logins", "Since", "Until"), bans,
        "None." if lim.ban_after else "None: bans are off (limits.ban_after = 0).")}
<h2>Passive address per client class</h2>
<p id="nat-summary">{_e(nat)}</p>
{_table(("Client class", "Example client", "Reaches us at", "Told in 227", "Why"),
        _nat_rows(server), "")}
<h2>Router port mappings</h2>
{_table(("Ports", "State", "Protocol", "Lease", "Renewal"), mapping,
        "None (nat.port_mapping is off)." if zc.mapper is None else "None yet.")}
<h2>Recent warnings</h2>
{_table(("Time", "Level", "Message"), warnings, "None.")}
</body></html>
"""
