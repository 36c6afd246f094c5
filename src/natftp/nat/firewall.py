"""Firewall rules for an FTP server, as text that can be applied verbatim (S4).

Pure: plain parameters in, text out. Two backends:

- ``nftables``: an ``nft -f`` script in its own table ``inet natftp`` (``table_name``).
  The script starts by declaring and deleting the table, so applying it again replaces
  the previous version atomically; ``nft delete table inet natftp`` removes it.
- ``iptables``: an ``iptables-restore --noflush`` script whose rules live in chains of
  their own (``NATFTP-*``) reached by one jump from each built-in chain.
  :func:`iptables_remove` gives the commands that remove them again.

Sections (each optional):

- host firewall: accept the control port and the passive range inbound, accept
  established/related traffic, accept the server's outbound active-mode data
  connections (from source port 20 by default, or any port).
- router: DNAT of the control port and of the whole passive range from the WAN
  interface to the server, and the forward accept rules for them.
- FTP helper: attach the kernel's ``ftp`` conntrack helper to the control port (nft
  ``ct helper`` object + ``ct helper set``; iptables ``-t raw ... -j CT --helper ftp``).
  Since Linux 6.0 the helper is never attached automatically.

The host section's chains use policy accept: they open what FTP needs where a stricter
policy drops the rest. With nftables an ``accept`` in one table does not override a
``drop`` in another, so merge the host rules into your own input chain when it drops.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from natftp.proto import hostport

Backend = Literal["nftables", "iptables"]
BACKENDS: tuple[Backend, ...] = ("nftables", "iptables")

DEFAULT_TABLE = "natftp"
CHAIN_PREFIX = "NATFTP"


class FirewallError(ValueError):
    """Parameters that cannot be turned into rules (the message says which and why)."""


@dataclass(frozen=True)
class Router:
    """Port forwarding on a NAT router in front of the server."""

    wan_if: str
    server: str  # IPv4 or IPv6 address of the server on the LAN
    lan_if: str | None = None  # when given, forward rules also name the LAN side
    server_port: int | None = None  # control port on the server (default: same as public)


@dataclass(frozen=True)
class FirewallParams:
    control_port: int = 21
    passive_ports: tuple[int, int] | None = None
    host: bool = True  # emit the host firewall section
    active: bool = True  # allow the server's outbound active-mode data connections
    active_source_port: int | None = 20  # None: active connections from any port
    router: Router | None = None
    ftp_helper: bool = False
    table_name: str = DEFAULT_TABLE
    extra_comment: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ServerPorts:
    """What a server's configuration says about the ports rules must open."""

    control_port: int | None  # the first listen address's port
    passive_ports: tuple[int, int] | None
    active_source_port: int  # 0: active connections from any port


def parse_port_range(text: str) -> tuple[int, int]:
    """``"50000-50100"`` (or ``"50000:50100"``) -> ``(50000, 50100)``, as every port range
    is written (:func:`natftp.proto.hostport.parse_port_range`)."""
    try:
        return hostport.parse_port_range(text)
    except hostport.PortRangeError as e:
        raise FirewallError(f"passive port range {e}") from None


def params_from_options(
    *,
    control_port: int = 21,
    passive_ports: str | None = None,
    router: str | None = None,
    server: str | None = None,
    lan_if: str | None = None,
    ftp_helper: bool = False,
    no_host: bool = False,
    active: bool = True,
    active_source_port: int | None = 20,
) -> FirewallParams:
    """The parameters `natftp firewall` builds from its options (the lab uses this too)."""
    if (router is None) != (server is None):
        raise FirewallError("--router WAN_IF and --server ADDR go together")
    r: Router | None = None
    if router is not None and server is not None:
        try:  # ADDR, ADDR:PORT, [V6]:PORT; a bare IPv6 address has no port
            addr, port = hostport.parse_hostport(server, default_port=0)
        except hostport.HostPortError as e:
            raise FirewallError(f"--server {e}") from None
        r = Router(wan_if=router, server=addr, lan_if=lan_if, server_port=port or None)
    return FirewallParams(
        control_port=control_port,
        passive_ports=parse_port_range(passive_ports) if passive_ports else None,
        host=not no_host,
        active=active,
        active_source_port=active_source_port,
        router=r,
        ftp_helper=ftp_helper,
    )


def _check_port(port: int, what: str) -> None:
    if not 1 <= port <= 65535:
        raise FirewallError(f"{what} {port} is not a TCP port (1-65535)")


def _check_range(r: tuple[int, int]) -> None:
    _check_port(r[0], "passive range start")
    _check_port(r[1], "passive range end")
    if r[0] > r[1]:
        raise FirewallError(f"passive range {r[0]}-{r[1]} ends before it starts")


def _check_ifname(name: str) -> None:
    if not name or len(name) > 15 or any(c in name for c in " \t\n\"'/;{}#"):
        raise FirewallError(f"interface name {name!r} is not valid (1-15 characters, "
                            "no spaces, quotes or slashes)")


def _family(addr: str) -> int:
    try:
        return ipaddress.ip_address(addr).version
    except ValueError:
        raise FirewallError(f"server address {addr!r} is not an IP address") from None


def validate(p: FirewallParams) -> None:
    """Raise :class:`FirewallError` when the parameters cannot produce rules."""
    _check_port(p.control_port, "control port")
    if p.passive_ports is not None:
        _check_range(p.passive_ports)
    if p.active_source_port is not None:
        _check_port(p.active_source_port, "active-mode source port")
    if not p.table_name.replace("_", "").isalnum():
        raise FirewallError(f"table name {p.table_name!r} must be letters, digits and _")
    if p.router is not None:
        _check_ifname(p.router.wan_if)
        if p.router.lan_if is not None:
            _check_ifname(p.router.lan_if)
        _family(p.router.server)
        if p.router.server_port is not None:
            _check_port(p.router.server_port, "server control port")


def render(p: FirewallParams, backend: Backend) -> str:
    """The rules for ``backend`` as one text (what ``natftp firewall`` prints)."""
    if backend == "nftables":
        return nftables_rules(p)
    if backend == "iptables":
        return iptables_rules(p)
    raise FirewallError(f"unknown backend {backend!r} (nftables or iptables)")


# --------------------------------------------------------------------------- nftables


def _header(p: FirewallParams, apply: str, remove: list[str]) -> list[str]:
    what = []
    if p.host:
        what.append("host firewall")
    if p.router is not None:
        what.append(f"port forwards on WAN {p.router.wan_if} to {p.router.server}")
    if p.ftp_helper:
        what.append("kernel FTP helper")
    lines = [
        "# natftp firewall rules: " + (", ".join(what) if what else "nothing selected"),
        f"# control port {p.control_port}, passive ports "
        + (f"{p.passive_ports[0]}-{p.passive_ports[1]}" if p.passive_ports else "none"),
        f"# apply:  {apply}",
    ]
    lines += [("# remove: " if i == 0 else "#         ") + r for i, r in enumerate(remove)]
    lines += [f"# {c}" for c in p.extra_comment]
    return lines


def _nft_ports(p: FirewallParams, control: int) -> str:
    items = [str(control)]
    if p.passive_ports is not None:
        items.append(f"{p.passive_ports[0]}-{p.passive_ports[1]}")
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def nftables_rules(p: FirewallParams) -> str:
    """An ``nft -f`` script defining table ``inet <table_name>`` (replaces an older one)."""
    validate(p)
    t = p.table_name
    out = _header(p, "nft -f FILE", [f"nft delete table inet {t}"])
    out += [f"table inet {t}", f"delete table inet {t}", f"table inet {t} {{"]
    chains: list[list[str]] = []
    if p.ftp_helper:
        helper = f"ftp-{p.control_port}"
        chains.append([
            f"\tct helper {helper} {{",
            '\t\ttype "ftp" protocol tcp',
            "\t\tl3proto inet",
            "\t}",
        ])
        # after conntrack (-200) and DNAT (-100): priority filter, as measured
        chains.append([
            "\tchain ftp_helper {",
            "\t\ttype filter hook prerouting priority filter; policy accept;",
            f'\t\ttcp dport {p.control_port} ct helper set "{helper}"',
            "\t}",
        ])
    if p.host:
        chains.append([
            "\tchain host_input {",
            "\t\ttype filter hook input priority filter; policy accept;",
            "\t\tct state established,related accept",
            f"\t\ttcp dport {_nft_ports(p, p.control_port)} ct state new accept",
            "\t}",
        ])
        if p.active:
            sport = (f"tcp sport {p.active_source_port} "
                     if p.active_source_port is not None else "meta l4proto tcp ")
            chains.append([
                "\tchain host_output {",
                "\t\ttype filter hook output priority filter; policy accept;",
                "\t\tct state established,related accept",
                f"\t\t{sport}ct state new accept",
                "\t}",
            ])
    r = p.router
    if r is not None:
        fam = "ip" if _family(r.server) == 4 else "ip6"
        sport_ = r.server_port or p.control_port
        dest = (f"{r.server}:{sport_}" if fam == "ip" else f"[{r.server}]:{sport_}")
        wan = f'iifname "{r.wan_if}" '
        pre = [
            "\tchain router_dnat {",
            "\t\ttype nat hook prerouting priority dstnat; policy accept;",
            f"\t\t{wan}tcp dport {p.control_port} dnat {fam} to {dest}",
        ]
        if p.passive_ports is not None:
            lo, hi = p.passive_ports
            pre.append(f"\t\t{wan}tcp dport {lo}-{hi} dnat {fam} to {r.server}")
        pre.append("\t}")
        chains.append(pre)
        lan = f'oifname "{r.lan_if}" ' if r.lan_if else ""
        fwd = [
            "\tchain router_forward {",
            "\t\ttype filter hook forward priority filter; policy accept;",
            "\t\tct state established,related accept",
            f"\t\t{wan}{lan}{fam} daddr {r.server} tcp dport {_nft_ports(p, sport_)} "
            "ct status dnat accept",
        ]
        if p.active and r.lan_if:
            src = (f"tcp sport {p.active_source_port} "
                   if p.active_source_port is not None else "meta l4proto tcp ")
            fwd.append(f'\t\tiifname "{r.lan_if}" oifname "{r.wan_if}" '
                       f"{fam} saddr {r.server} {src}ct state new accept")
        fwd.append("\t}")
        chains.append(fwd)
    for i, c in enumerate(chains):
        if i:
            out.append("")
        out += c
    out.append("}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- iptables


def _ipt_chains(p: FirewallParams) -> list[tuple[str, str, str]]:
    """(table, builtin chain, our chain) for every jump the script installs."""
    c = CHAIN_PREFIX
    res: list[tuple[str, str, str]] = []
    if p.ftp_helper:
        res.append(("raw", "PREROUTING", f"{c}-HELPER"))
    if p.host:
        res.append(("filter", "INPUT", f"{c}-INPUT"))
        if p.active:
            res.append(("filter", "OUTPUT", f"{c}-OUTPUT"))
    if p.router is not None:
        res.append(("nat", "PREROUTING", f"{c}-DNAT"))
        res.append(("filter", "FORWARD", f"{c}-FORWARD"))
    return res


def iptables_remove(p: FirewallParams) -> list[list[str]]:
    """Commands (argv lists) that remove what :func:`iptables_rules` installed."""
    cmds: list[list[str]] = []
    exe = _ipt_exe(p)
    for table, builtin, chain in _ipt_chains(p):
        cmds.append([exe, "-t", table, "-D", builtin, "-j", chain])
        cmds.append([exe, "-t", table, "-F", chain])
        cmds.append([exe, "-t", table, "-X", chain])
    return cmds


def _ipt_exe(p: FirewallParams) -> str:
    if p.router is not None and _family(p.router.server) == 6:
        return "ip6tables"
    return "iptables"


def iptables_rules(p: FirewallParams) -> str:
    """An ``iptables-restore --noflush`` script (``ip6tables-restore`` for an IPv6 server)."""
    validate(p)
    exe = _ipt_exe(p)
    remove = [" ".join(c) for c in iptables_remove(p)] or ["nothing to remove"]
    out = _header(p, f"{exe}-restore --noflush FILE (once; remove before re-applying)",
                  remove)
    by_table: dict[str, list[str]] = {"raw": [], "nat": [], "filter": []}
    decl: dict[str, list[str]] = {"raw": [], "nat": [], "filter": []}
    for table, builtin, chain in _ipt_chains(p):
        decl[table].append(f":{chain} - [0:0]")
        by_table[table].append(f"-A {builtin} -j {chain}")
    c = CHAIN_PREFIX
    passive = (f"{p.passive_ports[0]}:{p.passive_ports[1]}"
               if p.passive_ports is not None else None)
    if p.ftp_helper:
        by_table["raw"].append(f"-A {c}-HELPER -p tcp --dport {p.control_port} "
                               "-j CT --helper ftp")
    if p.host:
        f = by_table["filter"]
        f.append(f"-A {c}-INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
        f.append(f"-A {c}-INPUT -p tcp --dport {p.control_port} "
                 "-m conntrack --ctstate NEW -j ACCEPT")
        if passive:
            f.append(f"-A {c}-INPUT -p tcp --dport {passive} "
                     "-m conntrack --ctstate NEW -j ACCEPT")
        if p.active:
            sport = (f" --sport {p.active_source_port}"
                     if p.active_source_port is not None else "")
            f.append(f"-A {c}-OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
            f.append(f"-A {c}-OUTPUT -p tcp{sport} -m conntrack --ctstate NEW -j ACCEPT")
    r = p.router
    if r is not None:
        sport_ = r.server_port or p.control_port
        dest = f"{r.server}:{sport_}" if _family(r.server) == 4 else f"[{r.server}]:{sport_}"
        n = by_table["nat"]
        n.append(f"-A {c}-DNAT -i {r.wan_if} -p tcp --dport {p.control_port} "
                 f"-j DNAT --to-destination {dest}")
        if passive:
            n.append(f"-A {c}-DNAT -i {r.wan_if} -p tcp --dport {passive} "
                     f"-j DNAT --to-destination {r.server}")
        f = by_table["filter"]
        lan = f" -o {r.lan_if}" if r.lan_if else ""
        f.append(f"-A {c}-FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
        for port in [str(sport_)] + ([passive] if passive else []):
            f.append(f"-A {c}-FORWARD -i {r.wan_if}{lan} -d {r.server} -p tcp "
                     f"--dport {port} -m conntrack --ctstate DNAT -j ACCEPT")
        if p.active and r.lan_if:
            sport = (f" --sport {p.active_source_port}"
                     if p.active_source_port is not None else "")
            f.append(f"-A {c}-FORWARD -i {r.lan_if} -o {r.wan_if} -s {r.server} "
                     f"-p tcp{sport} -m conntrack --ctstate NEW -j ACCEPT")
    for table in ("raw", "nat", "filter"):
        if not decl[table]:
            continue
        out.append(f"*{table}")
        out += decl[table]
        out += by_table[table]
        out.append("COMMIT")
    return "\n".join(out) + "\n"
