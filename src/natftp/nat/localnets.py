"""The networks this host is directly attached to (read from the kernel, no tools needed).

The address policy tells a private client the server's local address only when that
client is on one of these networks: a private client that reaches us through a router's
port forward (scenario S1's 192.168.10.2) is on the far side of the NAT and must be told
the masquerade address instead.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

from natftp.nat.policy import IPNetwork

_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B


def _v4_networks() -> list[IPNetwork]:
    nets: list[IPNetwork] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _idx, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                addr = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)[20:24]
                mask = fcntl.ioctl(s.fileno(), _SIOCGIFNETMASK, req)[20:24]
            except OSError:
                continue
            nets.append(ipaddress.IPv4Network(
                f"{socket.inet_ntoa(addr)}/{socket.inet_ntoa(mask)}", strict=False))
    return nets


def _v6_networks() -> list[IPNetwork]:
    nets: list[IPNetwork] = []
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                hexaddr, plen = fields[0], int(fields[2], 16)
                addr = ipaddress.IPv6Address(int(hexaddr, 16))
                nets.append(ipaddress.IPv6Network(f"{addr}/{plen}", strict=False))
    except OSError:
        pass
    return nets


def local_networks() -> list[IPNetwork]:
    """All IPv4 and IPv6 networks of this host's interfaces (this network namespace's)."""
    return _v4_networks() + _v6_networks()
