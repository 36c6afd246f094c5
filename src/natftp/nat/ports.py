"""The passive port pool, and the port each passive port is advertised as.

Pure bookkeeping (the server does the binding): which ports of the configured range this
server holds, which one to try next, and how a local port maps to the port a client is
told when a NAT in front translates ports (``nat.advertised_ports``, e.g. a container
published as ``-p 31000-31099:30000-30099``).

When the range is exhausted the pool says so; it never falls back to a port outside the
range, which a firewall opened for that range would drop (pyftpdlib and ProFTPD do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


class PortRangeError(ValueError):
    """A port range that cannot be used (reversed, out of 1-65535, mismatched sizes)."""


def parse_range(text: str) -> tuple[int, int]:
    """``"30000-30099"`` -> ``(30000, 30099)``; a single ``"30000"`` is a one-port range."""
    low_s, sep, high_s = text.strip().partition("-")
    if not low_s.strip().isdigit() or (sep and not high_s.strip().isdigit()):
        raise PortRangeError(f"{text!r} is not LOW-HIGH")
    low = int(low_s)
    high = int(high_s) if sep else low
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise PortRangeError(f"{text!r} has a port outside 1-65535")
    if low > high:
        raise PortRangeError(f"{text!r} has LOW above HIGH")
    return low, high


def format_range(r: tuple[int, int]) -> str:
    return f"{r[0]}-{r[1]}" if r[0] != r[1] else str(r[0])


@dataclass
class PortPool:
    """Ports ``low..high`` handed out round-robin; ``None`` range means "any free port".

    ``advertised`` (same size as the range) maps local port ``low + i`` to
    ``advertised[0] + i`` in PASV and EPSV replies.
    """

    range: tuple[int, int] | None = None
    advertised: tuple[int, int] | None = None
    #: ports for which this says True are tried first (``nat.port_mapping``: the ports
    #: whose mapping on the router has landed); None = plain round-robin
    prefer: Callable[[int], bool] | None = field(default=None, repr=False)
    _in_use: set[int] = field(default_factory=set, repr=False)
    _next: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.advertised is not None:
            if self.range is None:
                raise PortRangeError("advertised ports need a passive port range to map")
            if self.advertised[1] - self.advertised[0] != self.range[1] - self.range[0]:
                raise PortRangeError(
                    f"advertised ports {format_range(self.advertised)} and passive ports "
                    f"{format_range(self.range)} differ in size")

    @property
    def size(self) -> int:
        return 0 if self.range is None else self.range[1] - self.range[0] + 1

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def candidates(self) -> Iterator[int]:
        """Free ports to try binding, starting after the last one handed out.

        Yields ``0`` once (let the kernel choose) when there is no range. The caller
        :meth:`take`s the port it managed to bind.
        """
        if self.range is None:
            yield 0
            return
        low, n = self.range[0], self.size
        start = self._next
        order: Iterator[int] = (low + (start + i) % n for i in range(n))
        prefer = self.prefer
        if prefer is not None:
            ports = list(order)
            first = [p for p in ports if prefer(p)]
            order = iter(first + [p for p in ports if not prefer(p)])
        for port in order:
            if port not in self._in_use:
                yield port

    def take(self, port: int) -> None:
        """Record ``port`` as held (the caller bound it)."""
        if self.range is not None:
            if not self.range[0] <= port <= self.range[1]:
                raise PortRangeError(f"port {port} is outside {format_range(self.range)}")
            self._next = (port - self.range[0] + 1) % self.size
        self._in_use.add(port)

    def release(self, port: int) -> None:
        """Give ``port`` back; releasing a port twice is harmless."""
        self._in_use.discard(port)

    def advertise(self, port: int) -> int:
        """The port a client is told for local ``port``."""
        if self.advertised is None or self.range is None:
            return port
        return self.advertised[0] + (port - self.range[0])

    def describe(self) -> str:
        """For replies and logs: ``30000-30099`` (and ``advertised as ...``)."""
        if self.range is None:
            return "any free port"
        text = format_range(self.range)
        if self.advertised is not None:
            text += f" (advertised as {format_range(self.advertised)})"
        return text


def split_range(r: tuple[int, int], n: int) -> list[tuple[int, int]] | None:
    """``r`` cut into ``n`` consecutive slices as equal as possible (the first ones one
    port larger); None when it has fewer than ``n`` ports. A cluster's nodes each get one."""
    size = r[1] - r[0] + 1
    if n < 1 or size < n:
        return None
    base, extra = divmod(size, n)
    out: list[tuple[int, int]] = []
    low = r[0]
    for i in range(n):
        high = low + base + (1 if i < extra else 0) - 1
        out.append((low, high))
        low = high + 1
    return out
