"""``natftp serve --explain``: what each class of client is told in a PASV reply.

Runs the real :class:`AdvertisePolicy` of the effective configuration against one
representative client per class (loopback, each LAN the host is on, the public internet,
each override), with the local address the kernel would use to answer that client.
"""

from __future__ import annotations

import socket

from natftp.nat.policy import AdvertisePolicy, NoUsableAddress
from natftp.nat.ports import PortPool
from natftp.proto.addr import AddrClass, IPAddress, classify, ip
from natftp.server.config import ServerConfig

PUBLIC_V4 = ip("198.51.100.77")
PUBLIC_V6 = ip("2001:db8::77")


def source_for(peer: IPAddress) -> IPAddress | None:
    """The local address the kernel would use to reach ``peer`` (no packet is sent)."""
    fam = socket.AF_INET if peer.version == 4 else socket.AF_INET6
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.connect((str(peer), 9))
            return ip(s.getsockname()[0])
    except OSError:
        return None


def _local_for(cfg: ServerConfig, peer: IPAddress) -> IPAddress | None:
    for la in cfg.listen:
        a = ip(la.host)
        if not a.is_unspecified and a.version == peer.version:
            return a
    return source_for(peer)


def explain(cfg: ServerConfig, policy: AdvertisePolicy, pool: PortPool) -> list[str]:
    out = [f"natftp serve --explain: ROOT {cfg.root}; listen "
           + ", ".join(str(la) for la in cfg.listen)]
    zc = cfg.nat.zeroconf
    listening = cfg.listen + cfg.tls.listen_implicit
    loopback_only = all(ip(la.host.split("%")[0]).is_loopback for la in listening)
    masq = policy.masquerade or ("(none: serving on loopback only)" if loopback_only else
                                 "(none: nat.masquerade / --masquerade not set)")
    if zc.discover:
        # --explain sends nothing; say what serving would do instead of guessing an answer
        masq = (f"auto ({zc.reason}): discovered when serving, in the background, from "
                f"{', '.join(zc.sources)} within {zc.discovery_timeout:g} s and re-checked "
                f"every {zc.recheck_interval:g} s; public clients are told what it finds, "
                "and the local address below until then or when nothing answers")
    if policy.masquerade_is_hostname:
        masq += " -> " + (", ".join(map(str, policy.masquerade_addresses)) or "unresolved")
    out.append(f"masquerade: {masq}")
    pp = cfg.proxy_protocol
    if pp.trusted:
        out.append("PROXY protocol: connections from " + ", ".join(map(str, pp.trusted))
                   + f" must start with a v1/v2 header (within {pp.header_timeout:g} s) "
                   "naming the client, whose address then counts everywhere; their "
                   "passive data connections may carry one too. Clients behind them are "
                   "classed below by that address")
    else:
        out.append("PROXY protocol: off (proxy_protocol.trusted empty; a header from any "
                   "client is refused)")
    out.append(f"passive ports: {pool.describe()}")
    out.append("What a client is told in a 227 reply (EPSV replies carry only the port):")
    cases: list[tuple[str, IPAddress]] = [("loopback client", ip("127.0.0.1")),
                                          ("loopback client", ip("::1"))]
    for net in policy.local_networks or ():
        if classify(net.network_address) in (AddrClass.LOOPBACK, AddrClass.LINK_LOCAL):
            continue
        if net.num_addresses < 4:
            continue
        cases.append((f"LAN client on {net}", net.network_address + 2))
    cases.append(("public client", PUBLIC_V4))
    cases.append(("public client", PUBLIC_V6))
    for ov in policy.overrides:
        n = ov.networks[0]
        peer = n.network_address + (1 if n.num_addresses > 1 else 0)
        cases.append((f"client in override {', '.join(map(str, ov.networks))}", peer))
    for label, peer in cases:
        if loopback_only and not peer.is_loopback:
            # nothing it is told matters: it never gets a control connection
            out.append(f"  {label} {peer}: cannot connect (this server listens on loopback "
                       "only); to serve it, listen on an address it can reach, e.g. "
                       f"--listen 0.0.0.0:{listening[0].port}")
            continue
        local = _local_for(cfg, peer)
        if local is None:
            out.append(f"  {label} {peer}: no route from this host (skipped)")
            continue
        if peer.version == 6:
            out.append(f"  {label} {peer}: IPv6, uses EPSV (PASV refused); data to "
                       f"[{local}] on the EPSV port")
            continue
        try:
            d = policy.advertise(local, peer)
        except NoUsableAddress as e:
            out.append(f"  {label} {peer}: PASV refused ({e})")
            continue
        warn = ""
        if d.warn_unreachable:
            warn = ("  (unless discovery finds the public address)" if zc.discover else
                    "  WARNING: it cannot reach that; set nat.masquerade (--masquerade)")
        out.append(f"  {label} {peer} (reaches us at {local}): told {d.address} -- "
                   f"{d.reason}{warn}")
    out += settings(cfg)
    return out


#: keys whose values are not printed (users carry password hashes)
_HIDDEN = ("users",)


def settings(cfg: ServerConfig) -> list[str]:
    """Where each value that was set came from: the file, the environment, a flag."""
    out = ["Settings (every other key has its default, docs/server.md):"]
    if not cfg.sources:
        out.append("  none set: every key has its default")
    for key, value, origin in cfg.sources:
        shown = (f"({len(value)} entries, not shown)" if key in _HIDDEN and
                 isinstance(value, list) else _show(value))
        out.append(f"  {key} = {shown}  <- {origin}")
    return out


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)


__all__ = ["explain"]
