"""The passive port pool, and the port each passive port is advertised as.

One pool for the server and the gateway. :class:`PortPool` is the bookkeeping: which
ports of the configured range are held, which one to try next, and how a local port maps
to the port a client is told when a NAT in front translates ports
(``nat.advertised_ports`` / ``--advertised-ports``, e.g. a container published as
``-p 31000-31099:30000-30099``). :func:`bind_passive` binds a listening socket on a free
port of it; :func:`listen_socket` is the control port's listening socket (the one rule for
``[::]`` dual-stack, in serve and the gateway).

When the range is exhausted the pool says so; it never falls back to a port outside the
range, which a firewall opened for that range would drop (pyftpdlib and ProFTPD do).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from natftp.proto.hostport import PortRangeError, format_port_range

#: the control port of ``natftp serve`` without ``--listen`` (21 needs root); ``natftp
#: firewall`` opens it by default, so its rules fit a server started with no options
DEFAULT_CONTROL_PORT = 2121


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
                    f"advertised ports {format_port_range(self.advertised)} and passive ports "
                    f"{format_port_range(self.range)} differ in size")

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
                raise PortRangeError(f"port {port} is outside {format_port_range(self.range)}")
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
        text = format_port_range(self.range)
        if self.advertised is not None:
            text += f" (advertised as {format_port_range(self.advertised)})"
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


def bind_passive(pool: PortPool, family: int, local: tuple[object, ...],
                 ) -> tuple[socket.socket, int] | None:
    """Bind a non-blocking listening socket on ``local`` (the control connection's local
    address, as ``getsockname`` gives it) and a free port of ``pool``, and :meth:`take`
    the port; None when every port of the range is busy."""
    for port in pool.candidates():
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            # On Linux SO_REUSEADDR never lets two sockets *listen* on one port; it only
            # lets us rebind a port whose last data connection is still in TIME_WAIT.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.bind((local[0], port, 0, local[3] if len(local) > 3 else 0))
            else:
                s.bind((local[0], port))
            s.listen(1)
            s.setblocking(False)
        except OSError as e:
            s.close()
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        real = int(s.getsockname()[1])
        pool.take(real)
        return s, real
    return None


def listen_socket(host: str, port: int, *, dual_stack: bool = True) -> socket.socket:
    """A non-blocking listening socket for a control port (serve's and the gateway's
    ``--listen``, ``--listen-implicit``): the unspecified ``::`` is dual-stack, IPv4
    clients arriving as IPv4-mapped addresses, unless ``dual_stack`` is False (0.0.0.0 has
    the same port); any other IPv6 address is IPv6 only, an IPv4 address IPv4."""
    v6 = ":" in host
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if v6:
            any_ = ipaddress.ip_address(host.split("%")[0]).is_unspecified
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                            0 if any_ and dual_stack else 1)
            sock.bind((host, port, 0, 0))
        else:
            sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
