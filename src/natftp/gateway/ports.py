"""A private passive-port pool for the gateway's client-facing data listeners.

(The server's pool in ``nat/ports.py`` was not committed when the gateway was written;
this one is deliberately tiny: bind a listening socket on a port of the range, trying
the ports round-robin from a random start, and forget the port when the socket closes.)
"""

from __future__ import annotations

import random
import socket


class PortsExhausted(OSError):
    """Every port of the passive range is in use."""


class PortPool:
    """Hands out listening sockets on ports ``low..high`` (0..0: any ephemeral port)."""

    def __init__(self, low: int = 0, high: int = 0) -> None:
        if not (0 <= low <= high <= 65535) or (low == 0) != (high == 0):
            raise ValueError(f"bad passive port range {low}-{high}")
        self.low, self.high = low, high
        self._next = random.randint(low, high) if low else 0

    @property
    def size(self) -> int:
        return self.high - self.low + 1 if self.low else 0

    def listen(self, host: str, backlog: int = 1) -> socket.socket:
        """A non-blocking listening socket on ``host`` and a free port of the range."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if not self.low:
            return _listen(family, host, 0, backlog)
        last: OSError | None = None
        for _ in range(self.size):
            port = self._next
            self._next = self.low if port >= self.high else port + 1
            try:
                return _listen(family, host, port, backlog)
            except OSError as e:  # in use (by us or anyone): try the next one
                last = e
        raise PortsExhausted(f"no free port in the passive range {self.low}-{self.high} "
                             f"on {host} ({last})")


def _listen(family: socket.AddressFamily, host: str, port: int,
            backlog: int) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        # On Linux SO_REUSEADDR never lets two sockets *listen* on one port; it only lets
        # us rebind a port whose last data connection is still in TIME_WAIT.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(backlog)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s
