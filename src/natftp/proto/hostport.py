"""``HOST:PORT`` and ``LOW-HIGH``: how every option and config key writes an endpoint or a
port range.

The server's ``listen``, the gateway's ``--listen``/``--upstream``, the firewall's
``--server`` and every passive port range go through these, so ``[::1]:2121``, a bare
``:::2121`` and ``30000-30099`` mean the same wherever they are typed.
"""

from __future__ import annotations

import ipaddress


class HostPortError(ValueError):
    """Not ``HOST:PORT``; ``reason`` says what is wrong, ``fix`` how to write it."""

    def __init__(self, text: str, reason: str, fix: str = "") -> None:
        super().__init__(f"{text!r}: {reason}" + (f" ({fix})" if fix else ""))
        self.text, self.reason, self.fix = text, reason, fix


class PortRangeError(ValueError):
    """A port range that cannot be used (not LOW-HIGH, reversed, out of 1-65535)."""


def _port(text: str, port_s: str, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    if not port_s.isascii() or not port_s.isdigit() or not low <= int(port_s) <= 65535:
        raise HostPortError(text, f"port {port_s!r} is not {low}-65535")
    return int(port_s)


def parse_hostport(text: str, *, default_port: int | None = None,
                   allow_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` -> ``(host, port)``; the host is not resolved.

    Without a ``default_port`` the port is required, and a bare IPv6 address takes the
    part after its last colon as the port (``:::2121`` is ``::`` port 2121). With one,
    the port may be left out (``HOST``, ``[V6]``), and a bare IPv6 address is all host.
    ``allow_zero`` accepts port 0 ("any free port", for listening addresses).
    """
    s = text.strip()
    port_s: str | None
    if s.isascii() and s.isdigit() and default_port is None:
        raise HostPortError(text, "a port alone, no host", f"write HOST:{s}")
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep:
            raise HostPortError(text, "the [ has no closing ]", "write [V6]:PORT")
        if rest and not rest.startswith(":"):
            raise HostPortError(text, f"{rest!r} after the ] is not :PORT",
                                "write [V6]:PORT")
        port_s = rest[1:] if rest else None
    elif s.count(":") == 1:
        host, _, port_s = s.partition(":")
    elif ":" not in s:
        host, port_s = s, None
    elif default_port is not None:
        host, port_s = s, None
    else:
        host, _, port_s = s.rpartition(":")
    if not host and not s.startswith(":"):
        raise HostPortError(text, "no host", "write HOST:PORT")
    if port_s is None:
        if default_port is None:
            raise HostPortError(text, "no port given", f"write {format_hostport(s, 2121)}")
        return host, default_port
    return host, _port(text, port_s, allow_zero)


def parse_listen(text: str) -> tuple[str, int]:
    """A listening address, as ``natftp serve --listen``, ``listen = [...]`` and
    ``natftp gateway --listen`` all take it: ``IP:PORT``, ``[V6]:PORT``, ``:::PORT``,
    ``:PORT`` or a bare ``PORT`` (the last two: every address, ``::`` dual-stack); port 0
    is any free port.

    The host must be an IP address of this host. A name is refused rather than resolved:
    which addresses ``localhost`` or a host name stand for depends on the resolver (one
    family, the other, or both), and a listener should say exactly where it listens, in
    every subcommand the same way.
    """
    s = text.strip()
    if s.isascii() and s.isdigit():
        return "::", _port(text, s, allow_zero=True)
    host, port = parse_hostport(s, allow_zero=True)
    if not host:
        return "::", port
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise HostPortError(
            text, f"{host!r} is not an IP address (a listener is given an address of this "
            "host, not a name)",
            f"write {format_hostport('127.0.0.1', port)} or {format_hostport('::1', port)} "
            f"for loopback, :{port} for every address") from None
    return host, port


def format_hostport(host: str, port: int | str) -> str:
    """``host:port``, with an IPv6 address in brackets (``port`` may be a range)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_port_range(text: str) -> tuple[int, int]:
    """``"30000-30099"`` (or iptables' ``"30000:30099"``) -> ``(30000, 30099)``; a single
    ``"30000"`` is a one-port range. Raises :class:`PortRangeError`."""
    s = text.strip()
    sep = "-" if "-" in s else ":"
    low_s, found, high_s = s.partition(sep)
    low_s, high_s = low_s.strip(), high_s.strip() if found else low_s.strip()
    if not (low_s.isascii() and low_s.isdigit() and high_s.isascii() and high_s.isdigit()):
        raise PortRangeError(f"{text!r} is not LOW-HIGH (e.g. 30000-30099)")
    low, high = int(low_s), int(high_s)
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise PortRangeError(f"{text!r} has a port outside 1-65535")
    if low > high:
        raise PortRangeError(f"{text!r} has LOW above HIGH: the range ends before it starts")
    return low, high


def format_port_range(r: tuple[int, int]) -> str:
    """``(30000, 30099)`` -> ``"30000-30099"``; a one-port range is just the port."""
    return f"{r[0]}-{r[1]}" if r[0] != r[1] else str(r[0])
