"""Declarative NAT lab topologies: nodes, segments, routers, and the client->server paths.

A segment with two members is one veth pair; with more it is a bridge in a switch
namespace of its own (node name ``sw-<segment>``), each member joined by a veth pair.
The "internet" is 198.51.100.0/24 (TEST-NET-2: public-looking, not RFC 1918; lftp's
heuristics care).
"""

from __future__ import annotations

from dataclasses import dataclass

CONTROL_PORT = 2121
PASSIVE_PORTS = (50000, 50049)


@dataclass(frozen=True)
class Member:
    node: str
    ifname: str
    cidr: str  # "192.168.10.2/24"

    @property
    def addr(self) -> str:
        return self.cidr.split("/")[0]


@dataclass(frozen=True)
class Segment:
    name: str
    members: tuple[Member, ...]

    @property
    def switch(self) -> str | None:
        return f"sw-{self.name}" if len(self.members) > 2 else None


@dataclass(frozen=True)
class RouterSpec:
    node: str
    wan_if: str
    lan_if: str
    lan_net: str  # masqueraded when leaving through wan_if
    forward_to: str | None = None  # server node whose control port + passive range are forwarded


@dataclass(frozen=True)
class Path:
    """A client talking to a server at `target` (a column of the matrix)."""

    name: str
    client: str
    server: str
    target: str  # the address the client dials
    public: str | None  # the address the server should advertise (masquerade), None if own


@dataclass(frozen=True)
class Topology:
    name: str
    description: str
    segments: tuple[Segment, ...]
    gateways: tuple[tuple[str, str], ...]  # (node, default gateway)
    routers: tuple[RouterSpec, ...]
    servers: tuple[str, ...]
    clients: tuple[str, ...]
    paths: tuple[Path, ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        seen: list[str] = []
        for seg in self.segments:
            for m in seg.members:
                if m.node not in seen:
                    seen.append(m.node)
        return tuple(seen)

    @property
    def switches(self) -> tuple[str, ...]:
        return tuple(s.switch for s in self.segments if s.switch)

    def members_of(self, node: str) -> list[Member]:
        return [m for s in self.segments for m in s.members if m.node == node]

    def router(self, node: str) -> RouterSpec | None:
        for r in self.routers:
            if r.node == node:
                return r
        return None


CONTEST = Topology(
    name="contest",
    description="S1: client 192.168.10.2 on the router's outside; router 192.168.10.1 / "
    "172.16.0.1 forwards the FTP ports to server 172.16.0.2 (helper on the server side)",
    segments=(
        Segment("out", (Member("client", "eth0", "192.168.10.2/24"),
                        Member("router", "wan", "192.168.10.1/24"))),
        Segment("in", (Member("router", "lan", "172.16.0.1/24"),
                       Member("server", "eth0", "172.16.0.2/24"))),
    ),
    gateways=(("client", "192.168.10.1"), ("server", "172.16.0.1")),
    routers=(RouterSpec("router", "wan", "lan", "172.16.0.0/24", forward_to="server"),),
    servers=("server",),
    clients=("client",),
    paths=(Path("contest", "client", "server", "192.168.10.1", "192.168.10.1"),),
)

FOURWAY = Topology(
    name="fourway",
    description="S8: client behind NAT (192.168.1.2, router A 198.51.100.1) or on the "
    "internet (198.51.100.10) x server behind NAT (172.16.0.2, router B 198.51.100.2 "
    "forwarding the FTP ports) or on the internet (198.51.100.20)",
    segments=(
        Segment("alan", (Member("cnat", "eth0", "192.168.1.2/24"),
                         Member("ra", "lan", "192.168.1.1/24"))),
        Segment("inet", (Member("ra", "wan", "198.51.100.1/24"),
                         Member("rb", "wan", "198.51.100.2/24"),
                         Member("cpub", "eth0", "198.51.100.10/24"),
                         Member("spub", "eth0", "198.51.100.20/24"))),
        Segment("blan", (Member("rb", "lan", "172.16.0.1/24"),
                         Member("snat", "eth0", "172.16.0.2/24"))),
    ),
    gateways=(("cnat", "192.168.1.1"), ("snat", "172.16.0.1")),
    routers=(RouterSpec("ra", "wan", "lan", "192.168.1.0/24"),
             RouterSpec("rb", "wan", "lan", "172.16.0.0/24", forward_to="snat")),
    servers=("snat", "spub"),
    clients=("cnat", "cpub"),
    paths=(
        Path("natc-nats", "cnat", "snat", "198.51.100.2", "198.51.100.2"),
        Path("natc-pubs", "cnat", "spub", "198.51.100.20", None),
        Path("pubc-nats", "cpub", "snat", "198.51.100.2", "198.51.100.2"),
        Path("pubc-pubs", "cpub", "spub", "198.51.100.20", None),
    ),
)

LAN = Topology(
    name="lan",
    description="S6: server 172.16.0.2 and LAN client 172.16.0.3 behind router 172.16.0.1 "
    "/ 198.51.100.1 (forwarding the FTP ports); WAN client 198.51.100.10",
    segments=(
        Segment("lan", (Member("router", "lan", "172.16.0.1/24"),
                        Member("server", "eth0", "172.16.0.2/24"),
                        Member("lanc", "eth0", "172.16.0.3/24"))),
        Segment("wan", (Member("wanc", "eth0", "198.51.100.10/24"),
                        Member("router", "wan", "198.51.100.1/24"))),
    ),
    gateways=(("server", "172.16.0.1"), ("lanc", "172.16.0.1"), ("wanc", "198.51.100.1")),
    routers=(RouterSpec("router", "wan", "lan", "172.16.0.0/24", forward_to="server"),),
    servers=("server",),
    clients=("lanc", "wanc"),
    paths=(
        Path("wan", "wanc", "server", "198.51.100.1", "198.51.100.1"),
        Path("lan", "lanc", "server", "172.16.0.2", "198.51.100.1"),
    ),
)

CLUSTER = Topology(
    name="cluster",
    description="issue 18 (natftp cluster): clients 198.51.100.10 and .11 on the internet; "
    "router 198.51.100.1 / 10.0.1.1 runs the balancer (HAProxy or nftables) in front of "
    "nodes node1-node3 (10.0.1.11-13); no matrix path (the test sets up the balancer)",
    segments=(
        Segment("wan", (Member("c1", "eth0", "198.51.100.10/24"),
                        Member("c2", "eth0", "198.51.100.11/24"),
                        Member("router", "wan", "198.51.100.1/24"))),
        Segment("lan", (Member("router", "lan", "10.0.1.1/24"),
                        Member("node1", "eth0", "10.0.1.11/24"),
                        Member("node2", "eth0", "10.0.1.12/24"),
                        Member("node3", "eth0", "10.0.1.13/24"))),
    ),
    gateways=(("c1", "198.51.100.1"), ("c2", "198.51.100.1"), ("node1", "10.0.1.1"),
              ("node2", "10.0.1.1"), ("node3", "10.0.1.1")),
    routers=(RouterSpec("router", "wan", "lan", "10.0.1.0/24"),),
    servers=(),
    clients=("c1", "c2"),
    paths=(),
)

TOPOLOGIES: dict[str, Topology] = {t.name: t for t in (CONTEST, FOURWAY, LAN, CLUSTER)}
