"""What keeps one client from taking the server from the others (issue 21): bans after
failed logins, a bounded pool for password checks, and log lines that a flood cannot
multiply.

- :class:`Bans`: failed logins per address within ``limits.ban_window``; at
  ``limits.ban_after`` the address is refused for ``limits.ban_time`` seconds. One
  WARNING line per ban, in a fixed shape that a fail2ban filter can match (one line in
  the log; wrapped here)::

      ... WARNING natftp.server ban 203.0.113.9: 10 failed logins within 600 s
      (limits.ban_after = 10); refused for 900 s (limits.ban_time)

  ``Server.bans.active()`` lists the bans in force (for metrics and a status page).
- :class:`PasswordChecks`: argon2 verification in ``limits.login_workers`` threads of
  its own, with at most ``limits.login_queue`` checks waiting; beyond that a login is
  refused at once (421) instead of queueing CPU and memory without bound. An unknown
  user is checked against a dummy hash with the same parameters as the users' own, so
  "no such user" and "wrong password" cost the same and cannot be told apart.
- :class:`Throttle`: a per-connection WARNING (a refused connection, a stray data
  connection, a failed TLS handshake) is written at most ``burst`` times per ``period``
  for each kind; the rest are counted and summed up in one line when the period ends.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from natftp import logsetup
from natftp.proto.addr import IPAddress

if TYPE_CHECKING:
    from natftp.server.config import Limits, User

log = logging.getLogger("natftp.server")


# -- rate-limited log lines ------------------------------------------------------------

class Throttle:
    """At most ``burst`` lines of one kind per ``period`` seconds; the others are
    counted, and one line when the period ends says how many were left out.

    ``once(kind, key)`` additionally writes a kind's line once per ``key`` (a source
    address) per ``remember`` seconds.
    """

    #: sources remembered by once(); the memory is dropped whole beyond this
    MAX_KEYS = 4096

    def __init__(self, logger: logging.Logger, *, burst: int = 10, period: float = 10.0,
                 remember: float = 600.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.logger, self.burst, self.period, self.remember = logger, burst, period, remember
        self.clock = clock
        #: kind -> [period start, lines written in it, lines left out]
        self._kinds: dict[str, list[float]] = {}
        self._seen: dict[tuple[str, str], float] = {}
        #: lines left out since start, by kind (for metrics)
        self.suppressed: dict[str, int] = {}

    def warn(self, kind: str, msg: str, *args: object, level: int = logging.WARNING
             ) -> bool:
        """Log the line unless this kind is over its budget; True if written."""
        now = self.clock()
        st = self._kinds.get(kind)
        if st is None or now - st[0] >= self.period:
            if st is not None and st[2]:
                self._summary(kind, st)
            st = self._kinds[kind] = [now, 0, 0]
        if st[1] >= self.burst:
            if not st[2]:
                self._schedule(kind)
            st[2] += 1
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            return False
        st[1] += 1
        logsetup.log(self.logger, level, msg, *args)
        return True

    def once(self, kind: str, key: str, msg: str, *args: object,
             level: int = logging.WARNING) -> bool:
        """Like :meth:`warn`, but only the first time ``key`` is seen in ``remember``
        seconds; True if written."""
        now = self.clock()
        last = self._seen.get((kind, key))
        if last is not None and now - last < self.remember:
            self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            return False
        if len(self._seen) >= self.MAX_KEYS:
            self._seen.clear()
        self._seen[(kind, key)] = now
        return self.warn(kind, msg, *args, level=level)

    def _summary(self, kind: str, st: list[float]) -> None:
        n, st[2] = int(st[2]), 0
        logsetup.log(self.logger, logging.WARNING,
                     "%d more %s lines left out in %g s (at most %d per %g s are written)",
                     n, kind, self.period, self.burst, self.period)

    def _schedule(self, kind: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a unit test): the next line of this kind sums up
        loop.call_later(self.period, self.flush, kind)

    def flush(self, kind: str) -> None:
        """The period of ``kind`` ended: write its summary line, if lines were left out."""
        st = self._kinds.get(kind)
        if st is not None and st[2] and self.clock() - st[0] >= self.period * 0.99:
            self._summary(kind, st)


# -- bans ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ban:
    """An address refused after ``failures`` failed logins; ``since``/``until`` are
    wall-clock times (``time.time()``), for display."""

    address: IPAddress
    failures: int
    since: float
    until: float
    #: the monotonic time it ends (what decides)
    ends: float


class Bans:
    """Failed logins per address and the bans they cause (``[limits] ban_*``)."""

    #: addresses with recent failures remembered at most; beyond, the oldest go
    MAX_TRACKED = 65536

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.after, self.window, self.duration = (limits.ban_after, limits.ban_window,
                                                  limits.ban_time)
        self.exempt = limits.ban_exempt
        self.clock = clock
        self._fails: dict[IPAddress, deque[float]] = {}
        self._bans: dict[IPAddress, Ban] = {}
        #: bans started since the server started
        self.total = 0

    def configure(self, limits: Limits) -> list[Ban]:
        """SIGHUP: the new ``[limits] ban_*``, keeping what was counted. Bans in force keep
        the end they were announced with, except those the new settings rule out: every
        ban when ``ban_after = 0`` (bans off), and the bans of addresses now in
        ``ban_exempt`` (how an administrator lets a locked-out address back in). Returns
        those lifted. Failures counted so far stay, within the new window and up to the
        new ``ban_after``."""
        after = limits.ban_after
        self.window, self.duration, self.exempt = (limits.ban_window, limits.ban_time,
                                                   limits.ban_exempt)
        if after != self.after:
            self.after = after
            self._fails = {} if after <= 0 else {
                a: deque(q, maxlen=after) for a, q in self._fails.items()}
        lifted = [b for b in self.active() if not self.enabled or self.is_exempt(b.address)]
        for b in lifted:
            del self._bans[b.address]
        for a in [a for a in self._fails if self.is_exempt(a)]:
            del self._fails[a]
        return lifted

    @property
    def enabled(self) -> bool:
        return self.after > 0

    def is_exempt(self, addr: IPAddress) -> bool:
        return any(addr.version == n.version and addr in n for n in self.exempt)

    def banned(self, addr: IPAddress) -> Ban | None:
        """The ban in force for ``addr``, if any (an expired one is forgotten here)."""
        if not self._bans:
            return None
        b = self._bans.get(addr)
        if b is not None and self.clock() >= b.ends:
            del self._bans[addr]
            return None
        return b

    def failed(self, addr: IPAddress) -> Ban | None:
        """Record a failed login from ``addr``; the new ban if this failure started one
        (the caller logs it: once per ban)."""
        if not self.enabled or self.is_exempt(addr) or self.banned(addr) is not None:
            return None
        now = self.clock()
        q = self._fails.get(addr)
        if q is None:
            if len(self._fails) >= self.MAX_TRACKED:
                self._forget(now)
            q = self._fails[addr] = deque(maxlen=self.after)
        q.append(now)
        while q and now - q[0] > self.window:
            q.popleft()
        if len(q) < self.after:
            return None
        del self._fails[addr]
        wall = time.time()
        b = Ban(addr, self.after, wall, wall + self.duration, now + self.duration)
        self._bans[addr] = b
        self.total += 1
        return b

    def _forget(self, now: float) -> None:
        for a in [a for a, q in self._fails.items() if not q or now - q[-1] > self.window]:
            del self._fails[a]
        while len(self._fails) >= self.MAX_TRACKED:
            del self._fails[next(iter(self._fails))]

    def active(self) -> list[Ban]:
        """The bans in force, oldest first."""
        now = self.clock()
        for a in [a for a, b in self._bans.items() if now >= b.ends]:
            del self._bans[a]
        return list(self._bans.values())

    def describe(self, b: Ban) -> str:
        """The log line of a new ban (see the module's text for its shape)."""
        return (f"ban {b.address}: {b.failures} failed logins within {self.window:g} s "
                f"(limits.ban_after = {self.after}); refused for {self.duration:g} s "
                "(limits.ban_time)")


# -- password checks -----------------------------------------------------------------

class Busy(Exception):
    """Too many password checks are running or waiting (``limits.login_queue``)."""


class PasswordChecks:
    """argon2 verification off the event loop, bounded in threads and in waiting checks.

    A plain password (``--user NAME:PASSWORD``) is compared on the loop in constant time.
    An unknown user costs what a known one does: an argon2 check of a dummy hash made with
    the first configured hash's parameters when any user has a hash, else a plain
    constant-time compare.
    """

    def __init__(self, limits: Limits, users: tuple[User, ...]) -> None:
        self.workers = limits.login_workers
        self.queue = limits.login_queue
        self._model = next((u.password_hash for u in users if u.password_hash), None)
        self._dummy: str | None = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        #: checks running or waiting now
        self.pending = 0
        #: logins refused because the pool was full, since start
        self.refused = 0

    def configure(self, limits: Limits, users: tuple[User, ...]) -> None:
        """SIGHUP: new users (the dummy hash follows the first hash's parameters: made
        again, once, when the model hash changed) and new ``login_workers`` /
        ``login_queue``, both live. A new worker count gets a new pool for the checks
        from now on; the old pool finishes the checks it holds and its threads end, so
        for a moment at most the old and the new count run at once."""
        model = next((u.password_hash for u in users if u.password_hash), None)
        with self._lock:
            if model != self._model:
                self._model, self._dummy = model, None
        self.queue = limits.login_queue
        if limits.login_workers != self.workers:
            self.workers = limits.login_workers
            old, self._pool = self._pool, None
            if old is not None:
                old.shutdown(wait=False)

    async def check(self, user: User | None, password: str) -> bool:
        """True if ``password`` is ``user``'s; raises :class:`Busy` when the pool and its
        queue are full."""
        if user is not None and user.password is not None:
            return _same(user.password, password)
        if user is None and self._model is None:
            _same(secrets.token_urlsafe(12), password)  # the work a plain user costs
            return False
        if self.pending >= self.workers + self.queue:
            self.refused += 1
            raise Busy
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="natftp-auth")
        hashed = user.password_hash if user is not None else None
        self.pending += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._verify, hashed, password)
        finally:
            self.pending -= 1
        return ok and user is not None

    def _verify(self, hashed: str | None, password: str) -> bool:
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        if hashed is None:
            hashed = self._dummy_hash()
        try:
            return PasswordHasher().verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    def _dummy_hash(self) -> str:
        """A hash of a random password with the model hash's parameters (made once, in a
        worker: it costs one argon2 run)."""
        with self._lock:
            if self._dummy is None:
                from argon2 import PasswordHasher, extract_parameters

                # no model: a reload removed the last hash while this check waited
                ph = (PasswordHasher() if self._model is None else
                      PasswordHasher.from_parameters(extract_parameters(self._model)))
                self._dummy = ph.hash(secrets.token_urlsafe(16))
            return self._dummy

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))


#: the process's throttle for per-connection warnings (sessions, passive listeners)
THROTTLE = Throttle(log)
