"""What the server counts while it runs, for metrics and the status page (issue 20).

Plain integers and dicts on the server, bumped where things happen: a dict increment
costs ~50 ns, where a ``prometheus_client`` counter takes a lock per increment. Nothing
here imports ``prometheus_client``: :mod:`natftp.server.metrics` turns these numbers
and the server's live state (sessions, passive ports, NAT) into metric families when
Prometheus scrapes, and only when ``[status] listen`` is set.

The recent-warnings ring (:class:`WarningRing`) is a logging handler the status page
reads; it is installed only with the status listener.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections import deque

#: upper bounds (seconds) of the transfer duration histogram's buckets (+Inf is implied)
DURATION_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0, 60.0, 300.0)

#: refusal reasons counted (the label values of natftp_refusals_total)
REFUSALS = ("bounce", "port_theft", "path_escape", "session_limit", "passive_ports_full",
            "login_attempts", "permission", "tls_required", "banned", "login_busy",
            "passive_per_ip")


class Stats:
    """Counters since the server started. ``direction`` is ``download``, ``upload`` or
    ``listing``; ``result`` ``ok``, ``aborted`` (ABOR, timeout, stop) or ``failed``."""

    __slots__ = ("started", "sessions", "logins", "transfers", "bytes", "durations",
                 "duration_sum", "tls", "refusals")

    def __init__(self) -> None:
        self.started = time.time()
        #: sessions ended, by how they ended (quit, closed, idle_timeout, login_timeout,
        #: line_timeout, login_failed, banned, login_busy, tls_error, server_stop, refused)
        self.sessions: dict[str, int] = {}
        #: logins by result (ok, failed)
        self.logins: dict[str, int] = {"ok": 0, "failed": 0}
        #: (direction, result) -> transfers / bytes
        self.transfers: dict[tuple[str, str], int] = {}
        self.bytes: dict[tuple[str, str], int] = {}
        #: direction -> bucket counts (len(DURATION_BUCKETS) + 1, the last is +Inf)
        self.durations: dict[str, list[int]] = {}
        self.duration_sum: dict[str, float] = {}
        #: (channel, result) -> TLS handshakes; channel control|data, result new|resumed|failed
        self.tls: dict[tuple[str, str], int] = {}
        self.refusals: dict[str, int] = dict.fromkeys(REFUSALS, 0)

    def session_ended(self, how: str) -> None:
        self.sessions[how] = self.sessions.get(how, 0) + 1

    def login(self, ok: bool) -> None:
        self.logins["ok" if ok else "failed"] += 1

    def transfer(self, direction: str, result: str, nbytes: int, seconds: float) -> None:
        key = (direction, result)
        self.transfers[key] = self.transfers.get(key, 0) + 1
        self.bytes[key] = self.bytes.get(key, 0) + nbytes
        b = self.durations.get(direction)
        if b is None:
            b = self.durations[direction] = [0] * (len(DURATION_BUCKETS) + 1)
            self.duration_sum[direction] = 0.0
        b[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum[direction] += seconds

    def handshake(self, channel: str, result: str) -> None:
        key = (channel, result)
        self.tls[key] = self.tls.get(key, 0) + 1

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1


class WarningRing(logging.Handler):
    """The last ``size`` WARNING-or-worse log lines, for the status page."""

    def __init__(self, size: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[tuple[float, str, str]] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append((record.created, record.levelname, record.getMessage()))
        except Exception:
            self.handleError(record)
