"""A minimal NAT topology for the doctor's tests (the shared lab had not landed yet).

    client ns 198.51.100.2 --- wan 198.51.100.1 [router ns] lan 172.16.0.1 --- 172.16.0.2 server
    (a documentation prefix stands in for the internet; the server side is RFC 1918)

The router DNATs the control port (and optionally the passive range) to the server,
masquerades the server's outbound traffic, drops anything new arriving on its WAN side
that is not forwarded (so an unforwarded port times out, as on a real router), and
rejects WAN->LAN traffic that was not DNAT-ed (so the private address cannot be reached
directly). The kernel FTP helper can be attached to the control port. The client can
get a firewall that drops inbound connections. Everything is torn down on exit: the
processes inside the namespaces (started by the test) are killed by PID, then the
namespaces are deleted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

CLIENT_IP = "198.51.100.2"
ROUTER_WAN = "198.51.100.1"
ROUTER_LAN = "172.16.0.1"
SERVER_IP = "172.16.0.2"


def sh(*args: str, ns: str | None = None, input: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")


@dataclass
class NatLab:
    client: str
    router: str
    server: str

    def exec_args(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


def _router_rules(port: int, passive: tuple[int, int] | None, helper: bool) -> str:
    fwd = ""
    if passive:
        fwd = (f"        iifname \"r-wan\" tcp dport {passive[0]}-{passive[1]} "
               f"dnat ip to {SERVER_IP}\n")
    helper_obj = ""
    helper_rule = ""
    if helper:
        helper_obj = '    ct helper ftp-std { type "ftp" protocol tcp; }\n'
        helper_rule = (f"    chain pre_helper {{ type filter hook prerouting priority 0; "
                       f"tcp dport {port} ct helper set \"ftp-std\"; }}\n")
    return f"""
table ip doclab {{
{helper_obj}{helper_rule}    chain pre {{
        type nat hook prerouting priority dstnat;
        iifname "r-wan" tcp dport {port} dnat ip to {SERVER_IP}
{fwd}    }}
    chain post {{
        type nat hook postrouting priority srcnat;
        oifname "r-wan" ip saddr 172.16.0.0/24 masquerade
    }}
    chain forward_filter {{
        type filter hook forward priority 0; policy accept;
        ct state established,related accept
        ct status dnat accept
        iifname "r-wan" oifname "r-lan" reject with icmp type admin-prohibited
    }}
    chain input_filter {{
        type filter hook input priority 0; policy accept;
        ct state established,related accept
        iifname "r-wan" drop
    }}
}}
"""


@contextmanager
def nat_lab(*, port: int = 21, passive: tuple[int, int] | None = None, helper: bool = False,
            client_drops_inbound: bool = False) -> Iterator[NatLab]:
    tag = uuid.uuid4().hex[:6]
    lab = NatLab(f"ndc-{tag}", f"ndr-{tag}", f"nds-{tag}")
    made: list[str] = []
    try:
        for ns in (lab.client, lab.router, lab.server):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", "c-wan", "netns", lab.client, "type", "veth", "peer", "name",
           "r-wan", "netns", lab.router)
        sh("ip", "link", "add", "s-lan", "netns", lab.server, "type", "veth", "peer", "name",
           "r-lan", "netns", lab.router)
        sh("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "c-wan", ns=lab.client)
        sh("ip", "link", "set", "c-wan", "up", ns=lab.client)
        sh("ip", "route", "add", "default", "via", ROUTER_WAN, ns=lab.client)
        sh("ip", "addr", "add", f"{ROUTER_WAN}/24", "dev", "r-wan", ns=lab.router)
        sh("ip", "addr", "add", f"{ROUTER_LAN}/24", "dev", "r-lan", ns=lab.router)
        sh("ip", "link", "set", "r-wan", "up", ns=lab.router)
        sh("ip", "link", "set", "r-lan", "up", ns=lab.router)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=lab.router)
        sh("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", ns=lab.router)
        sh("ip", "addr", "add", f"{SERVER_IP}/24", "dev", "s-lan", ns=lab.server)
        sh("ip", "link", "set", "s-lan", "up", ns=lab.server)
        sh("ip", "route", "add", "default", "via", ROUTER_LAN, ns=lab.server)
        sh("nft", "-f", "-", ns=lab.router, input=_router_rules(port, passive, helper))
        if client_drops_inbound:
            sh("nft", "-f", "-", ns=lab.client, input="""
table inet clientfw {
    chain input {
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ct state established,related accept
    }
}
""")
        yield lab
    finally:
        for ns in made:
            _kill_inside(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def _kill_inside(ns: str) -> None:
    """Processes left in a namespace the test created (servers' session children)."""
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                       timeout=10)
    for line in r.stdout.split():
        if line.isdigit():
            try:
                os.kill(int(line), signal.SIGKILL)
            except ProcessLookupError:
                pass
