"""The IPv4 default gateway (from /proc/net/route) and our address toward a host."""

from __future__ import annotations

import ipaddress
import socket
import struct

RTF_UP = 0x1
RTF_GATEWAY = 0x2


def parse_route_table(text: str) -> str | None:
    """The gateway of the lowest-metric IPv4 default route in /proc/net/route format."""
    best: tuple[int, str] | None = None
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        try:
            dest, gw, flags, metric, mask = (int(f[1], 16), int(f[2], 16), int(f[3], 16),
                                             int(f[6]), int(f[7], 16))
        except ValueError:
            continue
        if dest != 0 or mask != 0 or not flags & RTF_UP or not flags & RTF_GATEWAY:
            continue
        addr = str(ipaddress.IPv4Address(struct.pack("<I", gw)))
        if best is None or metric < best[0]:
            best = (metric, addr)
    return best[1] if best else None


def default_gateway(path: str = "/proc/net/route") -> str | None:
    try:
        with open(path) as f:
            return parse_route_table(f.read())
    except OSError:
        return None


def local_address_toward(host: str, port: int = 9) -> str:
    """The source address the kernel picks to reach ``host`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        return str(s.getsockname()[0])
