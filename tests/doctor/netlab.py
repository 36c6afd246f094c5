"""The doctor's NAT topology, built by natftp.lab (the lab ``natftp lab up`` builds)::

    client 198.51.100.2 --- wan 198.51.100.1 [router] lan 172.16.0.1 --- 172.16.0.2 server
    (a documentation prefix stands in for the internet; the server side is RFC 1918)

natftp.lab gives the router what it gives every lab router: it masquerades the server's
outbound traffic, rejects WAN->LAN traffic that was not DNAT-ed (so the private address
cannot be reached directly), and applies ``natftp firewall``'s rules: the control port
(and the passive range) forwarded to the server, the kernel FTP helper when asked. Two
things are the doctor's own and added here: the router drops anything new arriving on
its WAN side that is not forwarded (so an unforwarded port times out, as on a real
router), and the client can get a firewall that drops inbound connections. Teardown is
the lab's: the processes inside the namespaces are killed by PID, then the namespaces
are deleted, also when a test fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from natftp.lab.core import Lab
from natftp.lab.topologies import Member, Path, RouterSpec, Segment, Topology

CLIENT_IP = "198.51.100.2"
ROUTER_WAN = "198.51.100.1"
ROUTER_LAN = "172.16.0.1"
SERVER_IP = "172.16.0.2"

TOPOLOGY = Topology(
    name="doctor",
    description="the doctor's tests: client 198.51.100.2 on the router's outside; router "
    "198.51.100.1 / 172.16.0.1 forwards the FTP ports to server 172.16.0.2",
    segments=(
        Segment("wan", (Member("client", "eth0", f"{CLIENT_IP}/24"),
                         Member("router", "wan", f"{ROUTER_WAN}/24"))),
        Segment("lan", (Member("router", "lan", f"{ROUTER_LAN}/24"),
                         Member("server", "eth0", f"{SERVER_IP}/24"))),
    ),
    gateways=(("client", ROUTER_WAN), ("server", ROUTER_LAN)),
    routers=(RouterSpec("router", "wan", "lan", "172.16.0.0/24", forward_to="server"),),
    servers=("server",),
    clients=("client",),
    paths=(Path("doctor", "client", "server", ROUTER_WAN, ROUTER_WAN),),
)

#: "the passive range is not forwarded": the lab forwards a range, so it gets one port
#: that no server here listens on
UNUSED_RANGE = (64999, 64999)

ROUTER_INPUT = """table inet doclab_input
delete table inet doclab_input
table inet doclab_input {
	chain input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		iifname "wan" drop
	}
}
"""

CLIENT_FIREWALL = """table inet clientfw
delete table inet clientfw
table inet clientfw {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
	}
}
"""


class NatLab:
    """The namespaces' names (for ``ip netns exec`` and the servers' ``netns=``)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.client = lab.ns("client")
        self.router = lab.ns("router")
        self.server = lab.ns("server")

    def exec_args(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


@contextmanager
def nat_lab(*, port: int = 21, passive: tuple[int, int] | None = None, helper: bool = False,
            client_drops_inbound: bool = False) -> Iterator[NatLab]:
    with Lab.build(TOPOLOGY, helper=helper, control_port=port,
                   passive_ports=passive or UNUSED_RANGE) as lab:
        lab.run("router", ["nft", "-f", "-"], input=ROUTER_INPUT, check=True)
        if client_drops_inbound:
            lab.run("client", ["nft", "-f", "-"], input=CLIENT_FIREWALL, check=True)
        yield NatLab(lab)
