"""Prometheus metrics for ``natftp serve`` (``[status] listen``, issue 20).

Imported only when the status listener is configured (it imports ``prometheus_client``).
Nothing here runs per command or per transfer: the server keeps plain counters
(:class:`natftp.server.stats.Stats`) and its live state (sessions, the passive pool, the
NAT policy and discovery), and :class:`ServerCollector` turns them into metric families
when Prometheus scrapes, on the event loop, so what it reads is consistent.

Names follow Prometheus' conventions: ``natftp_`` prefix, base units in the name
(``_seconds``, ``_bytes``), ``_total`` on counters, ``_info`` for labels-only facts.
``docs/operations.md`` lists every metric.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from natftp.server.stats import DURATION_BUCKETS, REFUSALS

if TYPE_CHECKING:
    from natftp.server.app import Server


def version() -> str:
    """natftp's installed version."""
    try:
        return metadata.version("natftp")
    except metadata.PackageNotFoundError:
        return "unknown"


class ServerCollector(Collector):
    """Reads one :class:`Server` at scrape time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.version = version()

    def collect(self) -> Iterator[Metric]:
        srv, st = self.server, self.server.stats
        loop = type(srv.loop).__module__.split(".")[0]
        yield InfoMetricFamily("natftp_build", "natftp version and runtime",
                               value={"version": self.version,
                                      "python": platform.python_version(),
                                      "loop": loop})
        yield GaugeMetricFamily("natftp_start_time_seconds",
                                "When the server started (Unix time)", value=st.started)

        sessions = list(srv.sessions)
        yield GaugeMetricFamily("natftp_sessions_open", "Control connections open now",
                                value=len(sessions))
        yield GaugeMetricFamily("natftp_sessions_logged_in", "Sessions logged in now",
                                value=sum(1 for s in sessions if s.user is not None))
        ended = CounterMetricFamily("natftp_sessions", "Sessions ended, by how they ended "
                                    "(refused: limits.max_sessions[_per_ip]; reset: by the "
                                    "client before it could be served)",
                                    labels=["result"])
        how_ended = dict(st.sessions)
        if srv.counts["reset_at_accept"]:
            how_ended["reset"] = srv.counts["reset_at_accept"]
        for how, n in sorted(how_ended.items()):
            ended.add_metric([how], n)
        yield ended
        logins = CounterMetricFamily("natftp_logins", "Login attempts by result",
                                     labels=["result"])
        for result, n in st.logins.items():
            logins.add_metric([result], n)
        yield logins

        transfers = CounterMetricFamily("natftp_transfers", "Transfers ended, by "
                                        "direction and result", labels=["direction",
                                                                        "result"])
        nbytes = CounterMetricFamily("natftp_transfer_bytes", "Bytes moved on data "
                                     "connections, by direction and result",
                                     labels=["direction", "result"])
        for key in sorted(st.transfers):
            transfers.add_metric(list(key), st.transfers[key])
            nbytes.add_metric(list(key), st.bytes[key])
        yield transfers
        yield nbytes
        yield GaugeMetricFamily("natftp_transfers_in_progress", "Transfers running now",
                                value=sum(1 for s in sessions if s.xfer is not None))
        hist = HistogramMetricFamily("natftp_transfer_duration_seconds", "Transfer "
                                     "durations, from the command to the end",
                                     labels=["direction"])
        for direction in sorted(st.durations):
            counts = st.durations[direction]
            cum, buckets = 0, []
            for le, n in zip((*map(str, DURATION_BUCKETS), "+Inf"), counts, strict=True):
                cum += n
                buckets.append((le, cum))
            hist.add_metric([direction], buckets, st.duration_sum[direction])
        yield hist

        pool = srv.pool
        yield GaugeMetricFamily("natftp_passive_ports_in_use", "Passive ports held "
                                "(listening or kept for the session's next transfer)",
                                value=pool.in_use)
        if pool.size:
            yield GaugeMetricFamily("natftp_passive_ports_free", "Passive ports of "
                                    "passive.ports not held", value=pool.size - pool.in_use)

        tls = CounterMetricFamily("natftp_tls_handshakes", "TLS handshakes by connection "
                                  "(control, data) and result (new, resumed, failed)",
                                  labels=["channel", "result"])
        for key in sorted(st.tls):
            tls.add_metric(list(key), st.tls[key])
        yield tls
        refused = CounterMetricFamily("natftp_refusals", "Refused requests by reason",
                                      labels=["reason"])
        by_reason = refusals(srv)
        for reason in (*REFUSALS, *sorted(set(by_reason) - set(REFUSALS))):
            refused.add_metric([reason], by_reason.get(reason, 0))
        yield refused
        yield from self._guard()

        yield from self._nat()

        reloads = CounterMetricFamily("natftp_config_reloads", "SIGHUP reloads by result",
                                      labels=["result"])
        reloads.add_metric(["ok"], srv.reloads[0])
        reloads.add_metric(["failed"], srv.reloads[1])
        yield reloads
        if srv.reloaded_at is not None:
            yield GaugeMetricFamily("natftp_config_last_reload_success_timestamp_seconds",
                                    "When a reload was last applied (Unix time)",
                                    value=srv.reloaded_at)

    def _guard(self) -> Iterator[Metric]:
        """Bans, the password-check pool and the rate-limited log lines (issue 21's
        :mod:`natftp.server.guard`)."""
        srv = self.server
        yield CounterMetricFamily("natftp_bans", "Addresses banned after limits.ban_after "
                                  "failed logins, since start", value=srv.bans.total)
        yield GaugeMetricFamily("natftp_bans_in_force", "Addresses refused now "
                                "(limits.ban_time not over)", value=len(srv.bans.active()))
        pw = srv.passwords
        yield GaugeMetricFamily("natftp_login_checks_pending", "Password checks running or "
                                "waiting now", value=pw.pending)
        yield GaugeMetricFamily("natftp_login_checks_max", "Password checks that may run "
                                "or wait at once (limits.login_workers + login_queue); "
                                "beyond, a login is refused busy", value=pw.workers + pw.queue)
        left_out = CounterMetricFamily("natftp_log_lines_suppressed", "Warning lines left "
                                       "out by the rate limit, by kind (summed up in the "
                                       "log)", labels=["kind"])
        for kind, n in sorted(srv.throttle.suppressed.items()):
            left_out.add_metric([kind], n)
        yield left_out

    def _nat(self) -> Iterator[Metric]:
        srv = self.server
        zc = srv.zeroconf
        policy = srv.policy
        addr = InfoMetricFamily("natftp_nat_public_address", "The public address told to "
                                "clients outside, and where it came from (config, dns HOST, "
                                "or the discovery source)", labels=["address", "source"])
        if policy.masquerade_addresses:
            source = (f"dns {policy.masquerade}" if policy.masquerade_is_hostname
                      else "config")
            for a in policy.masquerade_addresses:
                addr.add_metric([str(a), source], {})
        elif policy.discovered is not None and policy.discovered.public is not None:
            addr.add_metric([str(policy.discovered.public), policy.discovered.public_source],
                            {})
        yield addr
        found = policy.discovered
        if found is not None and found.router is not None:
            yield InfoMetricFamily("natftp_nat_router_address", "The WAN address the router "
                                   "reported (nat.masquerade = auto; private behind a "
                                   "second NAT)", value={"address": str(found.router),
                                                         "source": found.router_source})
        if zc.config.discover:
            yield GaugeMetricFamily("natftp_nat_discovery_pending", "1 until the first "
                                    "discovery round has ended", value=int(zc.pending))
        if zc.result_at is not None:
            yield GaugeMetricFamily("natftp_nat_discovery_last_timestamp_seconds",
                                    "When the last discovery round ended (Unix time)",
                                    value=zc.result_at)
        mappings = zc.mappings()
        if mappings:
            by_state: dict[str, int] = {}
            for r in mappings:
                by_state[r.state.name.lower()] = by_state.get(r.state.name.lower(), 0) + 1
            ports = GaugeMetricFamily("natftp_nat_mapping_ports", "Router port mappings "
                                      "(nat.port_mapping) by state", labels=["state"])
            for state, n in sorted(by_state.items()):
                ports.add_metric([state], n)
            yield ports
            ends = [r.expires for r in mappings if r.expires is not None]
            if ends:
                yield GaugeMetricFamily("natftp_nat_mapping_lease_end_timestamp_seconds",
                                        "When the first mapped port's lease ends unless "
                                        "renewed (Unix time)", value=min(ends))


def refusals(server: Server) -> dict[str, int]:
    """Refusals by reason: the server's counters, and logins refused because the password
    checks were full (counted where that is decided, in the pool)."""
    counts = dict(server.stats.refusals)
    counts["login_busy"] = counts.get("login_busy", 0) + server.passwords.refused
    return counts


def registry(server: Server) -> CollectorRegistry:
    """A registry of its own (not the global one): the server's collector, and the
    process's CPU, memory and file descriptors."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServerCollector(server))
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    return reg


def exposition(reg: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """The scrape's body and Content-Type: OpenMetrics when the scraper asks for it
    (Prometheus does), else the classic text format."""
    encoder, content_type = choose_encoder(accept)
    return encoder(reg), content_type


__all__ = ["ServerCollector", "exposition", "refusals", "registry"]
