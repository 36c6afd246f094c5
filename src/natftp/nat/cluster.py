"""A natftp cluster: N nodes behind one public address, and the plan that makes passive
mode work across them without sticky sessions (``natftp cluster``, issue 18).

The trick is in the passive range: each node gets its own slice of it, and the front
(HAProxy, or nftables DNAT on a Linux router) forwards every port of a slice to the node
that owns it. A client's data connection therefore reaches the node that opened the port,
whichever node its control connection was balanced to. Every node advertises the public
address (``nat.masquerade``); behind HAProxy it trusts the balancer's PROXY v2 header for
the client's real address (``[proxy_protocol] trusted``).

Pure: a parsed ``cluster.toml`` in, text and dicts out (:func:`parse`, :func:`haproxy`,
:func:`nftables`, :func:`node_config`). The CLI writes the node configuration as TOML and
checks it with the server's own validator.

``cluster.toml``::

    [public]
    address = "198.51.100.1"        # what clients connect to
    control_port = 21
    passive_ports = "30000-30299"   # the whole range, split evenly between the nodes

    [balancer]
    kind = "haproxy"                # or "nftables"
    address = "10.0.1.1"            # the address nodes see the balancer connect from

    [[nodes]]
    name = "node1"
    address = "10.0.1.11"           # port = 2121 by default

    [serve]                         # copied into every node's natftp configuration
    root = "/srv/ftp"
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from natftp.nat.ports import split_range
from natftp.proto.hostport import PortRangeError, format_hostport
from natftp.proto.hostport import format_port_range as format_range
from natftp.proto.hostport import parse_port_range as parse_range

KINDS = ("haproxy", "nftables")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


class ClusterError(ValueError):
    """A problem in cluster.toml: the key, the value, what is wrong and the fix."""

    def __init__(self, key: str, value: object, problem: str, fix: str) -> None:
        self.key = key
        super().__init__(f"{key} = {value!r}: {problem}; fix: {fix}")


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    port: int
    passive: tuple[int, int]


@dataclass(frozen=True)
class Cluster:
    public_address: str
    control_port: int
    passive_ports: tuple[int, int]
    kind: str
    balancer_address: str | None
    nodes: tuple[Node, ...]
    #: HAProxy: health-check interval (ms), PROXY v2 on passive ports too, stats socket
    check_interval_ms: int = 2000
    data_proxy_protocol: bool = True
    stats_socket: str | None = None
    #: HAProxy: where it listens (default: the public address)
    bind_address: str | None = None
    #: nftables: the router's public interface
    wan_interface: str | None = None
    #: the [serve] table, laid under each node's generated keys
    serve: Mapping[str, Any] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        near = difflib.get_close_matches(name, [n.name for n in self.nodes], 1)
        raise ClusterError("node", name, "no such node in cluster.toml",
                           f"did you mean {near[0]}?" if near else
                           "use one of " + ", ".join(n.name for n in self.nodes))


def _check_keys(prefix: str, table: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for k, v in table.items():
        if k not in known:
            near = difflib.get_close_matches(k, known, 1)
            raise ClusterError(prefix + k, v, "unknown key",
                               f"did you mean {prefix}{near[0]}?" if near else
                               f"remove it (known here: {', '.join(known)})")


def _get(table: Mapping[str, Any], prefix: str, key: str, typ: type, default: Any = ...,
         ) -> Any:
    if key not in table:
        if default is ...:
            raise ClusterError(prefix + key, "(missing)", "required",
                               f"add {key} = ... to [{prefix.rstrip('.')}]")
        return default
    v = table[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise ClusterError(prefix + key, v, f"expected {typ.__name__}",
                           f"give {prefix}{key} a {typ.__name__}")
    return v


def _addr(key: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ClusterError(key, text, "not an IP address", 'e.g. "10.0.1.11"') from None


def _port(key: str, v: int) -> int:
    if not 1 <= v <= 65535:
        raise ClusterError(key, v, "not a TCP port", "use 1-65535")
    return v


def _range(key: str, text: str) -> tuple[int, int]:
    try:
        return parse_range(text)
    except PortRangeError as e:
        raise ClusterError(key, text, str(e), 'write LOW-HIGH, e.g. "30000-30299"') from None


def parse(data: Mapping[str, Any]) -> Cluster:
    """Validate a cluster.toml dict; raises :class:`ClusterError`."""
    _check_keys("", data, ("public", "balancer", "nodes", "serve"))
    pub = _get(data, "", "public", dict)
    _check_keys("public.", pub, ("address", "control_port", "passive_ports"))
    public = _addr("public.address", _get(pub, "public.", "address", str))
    control = _port("public.control_port", _get(pub, "public.", "control_port", int, 21))
    total = _range("public.passive_ports", _get(pub, "public.", "passive_ports", str))
    bal = _get(data, "", "balancer", dict, {})
    _check_keys("balancer.", bal, ("kind", "address", "check_interval_ms",
                                   "data_proxy_protocol", "stats_socket", "bind",
                                   "wan_interface"))
    kind = _get(bal, "balancer.", "kind", str, "haproxy")
    if kind not in KINDS:
        raise ClusterError("balancer.kind", kind, "unknown front",
                           f"use {' or '.join(KINDS)}")
    baddr = bal.get("address")
    if baddr is not None:
        baddr = _addr("balancer.address", _get(bal, "balancer.", "address", str))
    if kind == "haproxy" and baddr is None:
        raise ClusterError("balancer.address", "(missing)", "the nodes must know which "
                           "address the balancer connects from, to trust its PROXY "
                           "headers and nobody else's",
                           'add address = "10.0.1.1" (its address on the nodes\' network)')
    wan = bal.get("wan_interface")
    if kind == "nftables":
        wan = _get(bal, "balancer.", "wan_interface", str, None)
        if wan is None or not _IFNAME.match(wan):
            raise ClusterError("balancer.wan_interface", wan or "(missing)",
                               "nftables rules need the router's public interface",
                               'add wan_interface = "eth0" to [balancer]')
    interval = _get(bal, "balancer.", "check_interval_ms", int, 2000)
    if not 100 <= interval <= 60000:
        raise ClusterError("balancer.check_interval_ms", interval, "not 100-60000",
                           "use e.g. 2000")
    stats = _get(bal, "balancer.", "stats_socket", str, None)
    bind = bal.get("bind")
    if bind is not None:
        bind = _addr("balancer.bind", _get(bal, "balancer.", "bind", str))

    nodes_v = _get(data, "", "nodes", list)
    if not nodes_v:
        raise ClusterError("nodes", nodes_v, "no nodes", "add [[nodes]] tables")
    slices = split_range(total, len(nodes_v))
    if slices is None:
        raise ClusterError("public.passive_ports", format_range(total),
                           f"fewer ports than the {len(nodes_v)} nodes",
                           "give each node at least one passive port (ideally 50 or more)")
    nodes: list[Node] = []
    for i, n in enumerate(nodes_v):
        key = f"nodes[{i}]."
        if not isinstance(n, dict):
            raise ClusterError(f"nodes[{i}]", n, "expected a table", "write [[nodes]]")
        _check_keys(key, n, ("name", "address", "port"))
        name = _get(n, key, "name", str)
        if not _NAME.match(name):
            raise ClusterError(key + "name", name, "not a usable name",
                               "letters, digits, '.', '_' and '-' (it names HAProxy "
                               "sections)")
        addr = _addr(key + "address", _get(n, key, "address", str))
        port = _port(key + "port", _get(n, key, "port", int, 2121))
        lo, hi = slices[i]
        if lo <= port <= hi or lo <= control <= hi:
            raise ClusterError(key + "port", port, f"inside the passive slice "
                               f"{format_range(slices[i])}",
                               "choose control ports outside public.passive_ports")
        nodes.append(Node(name, addr, port, slices[i]))
    names = [n.name for n in nodes]
    for nm in names:
        if names.count(nm) > 1:
            raise ClusterError("nodes", nm, "node name given twice", "name each node once")
    serve = _get(data, "", "serve", dict, {})
    for k in ("listen", "passive", "proxy_protocol"):
        if k in serve:
            raise ClusterError(f"serve.{k}", serve[k], "is planned per node by the cluster",
                               "remove it: natftp cluster node sets it for each node")
    return Cluster(public, control, total, kind, baddr, tuple(nodes), interval,
                   _get(bal, "balancer.", "data_proxy_protocol", bool, True), stats, bind,
                   wan, serve)


# -- HAProxy -------------------------------------------------------------------------------

def haproxy(c: Cluster, source: str = "cluster.toml") -> str:
    """A complete haproxy.cfg (``mode tcp``) for the cluster."""
    bind = c.bind_address or c.public_address
    src = f" source {c.balancer_address}" if c.balancer_address else ""
    pp = " send-proxy-v2" if c.data_proxy_protocol else ""
    iv = c.check_interval_ms
    out = [
        f"# natftp cluster haproxy: generated from {source}",
        f"# {len(c.nodes)} node(s) behind {c.public_address}: control port "
        f"{c.control_port} balanced (leastconn) with a PROXY v2 header and an FTP health "
        "check",
        f"# (it sends PROXY LOCAL, expects 220, says QUIT); each node's slice of passive "
        f"ports {format_range(c.passive_ports)}",
        "# is forwarded to that node only (a server line without a port keeps the port), "
        "so no stickiness is needed.",
        "# check: haproxy -c -f FILE    run: haproxy -f FILE",
        "global",
        "    # maxconn: HAProxy derives it from the open-files limit (ulimit -n)",
    ]
    if c.stats_socket:
        out.append(f"    stats socket {c.stats_socket} mode 600 level admin")
    out += [
        "",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    # FTP control connections sit idle between commands (natftp closes them after",
        "    # timeouts.idle, 300 s by default); data connections can stall as long",
        "    timeout client 1h",
        "    timeout server 1h",
        f"    timeout check {max(3000, iv)}ms",
        "    # a node that refuses a new connection before the check notices: try another",
        "    retries 2",
        "    option redispatch",
        "",
        "frontend ftp_control",
        f"    bind {format_hostport(bind, c.control_port)}",
        "    default_backend ftp_nodes",
        "",
        "backend ftp_nodes",
        "    balance leastconn",
        "    # the check's own connection carries PROXY LOCAL (from send-proxy-v2 below)",
        "    option tcp-check",
        "    tcp-check expect rstring ^220",
        "    tcp-check send QUIT\\r\\n",
        "    tcp-check expect rstring ^221",
        f"    default-server send-proxy-v2 check inter {iv}ms fall 2 rise 2{src}",
    ]
    out += [f"    server {n.name} {format_hostport(n.address, n.port)}" for n in c.nodes]
    for n in c.nodes:
        out += [
            "",
            f"# passive ports of {n.name}",
            f"frontend ftp_passive_{n.name}",
            f"    bind {format_hostport(bind, format_range(n.passive))}",
            f"    default_backend ftp_passive_{n.name}",
            "",
            f"backend ftp_passive_{n.name}",
            f"    server {n.name} {n.address}{pp}{src}",
        ]
    return "\n".join(out) + "\n"


# -- nftables --------------------------------------------------------------------------------

def nftables(c: Cluster, source: str = "cluster.toml") -> str:
    """The same plan as DNAT rules on a Linux router (table ``ip natftp_cluster``):
    control connections spread round-robin (``numgen``), each passive slice to its node.
    No health checks and no PROXY header: the nodes see the client's address itself."""
    fam = "ip" if ":" not in c.public_address else "ip6"
    wan = c.wan_interface or "eth0"
    table = "natftp_cluster"
    pick = ", ".join(f"{i} : {n.address} . {n.port}" for i, n in enumerate(c.nodes))
    out = [
        f"# natftp cluster nftables: generated from {source}",
        f"# {len(c.nodes)} node(s) behind {c.public_address} on {wan}: new control "
        "connections round-robin (no health checks: a stopped node",
        "# still gets its share until you remove it), each passive slice to its node. The "
        "nodes see the",
        "# clients' own addresses (no PROXY header); their default route must be this "
        "router.",
        f"# apply: nft -f FILE    remove: nft delete table {fam} {table}",
        f"table {fam} {table}",
        f"delete table {fam} {table}",
        f"table {fam} {table} {{",
        "\tchain cluster_dnat {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        f'\t\tiifname "{wan}" {fam} daddr {c.public_address} tcp dport {c.control_port} '
        f"dnat {fam} to numgen inc mod {len(c.nodes)} map {{ {pick} }}",
    ]
    for n in c.nodes:
        out.append(f'\t\tiifname "{wan}" {fam} daddr {c.public_address} tcp dport '
                   f"{format_range(n.passive)} dnat {fam} to {n.address}")
    out += [
        "\t}",
        "",
        "\tchain cluster_forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        "\t\tct state established,related accept",
        f'\t\tiifname "{wan}" ct status dnat accept',
        "\t}",
        "}",
    ]
    return "\n".join(out) + "\n"


# -- the nodes -----------------------------------------------------------------------------

def node_config(c: Cluster, name: str) -> dict[str, Any]:
    """The ``natftp serve`` configuration (the TOML file's dict) of node ``name``: the
    [serve] table with its listen address, passive slice, the public address as
    masquerade and, behind HAProxy, the balancer as trusted PROXY source."""
    n = c.node(name)
    cfg: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v)
                           for k, v in c.serve.items()}
    cfg["listen"] = [format_hostport(n.address, n.port)]
    cfg["passive"] = {"ports": format_range(n.passive)}
    nat = cfg.setdefault("nat", {})
    nat["masquerade"] = c.public_address
    if c.kind == "haproxy" and c.balancer_address is not None:
        cfg["proxy_protocol"] = {"trusted": [c.balancer_address]}
    return cfg
