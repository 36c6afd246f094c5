"""``natftp serve --explain``: what each class of client is told in a PASV reply.

Runs the real :class:`AdvertisePolicy` of the effective configuration against one
representative client per class (:meth:`AdvertisePolicy.client_classes`: loopback, each
LAN the host is on, a private client beyond them, the public internet, each override),
with the local address the kernel would use to answer that client. With
``nat.masquerade = "auto"`` the caller runs one discovery round first (what serving does
at start) and hands its result in, so the lines show the addresses serving would tell.
"""

from __future__ import annotations

import socket

from natftp.nat.discovery import DiscoveryResult
from natftp.nat.policy import AdvertisePolicy, ClassDecision, Rule
from natftp.nat.ports import PortPool
from natftp.proto.addr import IPAddress, ip
from natftp.server.config import ServerConfig
from natftp.server.zeroconf import ports_to_forward


def source_for(peer: IPAddress) -> IPAddress | None:
    """The local address the kernel would use to reach ``peer`` (no packet is sent)."""
    fam = socket.AF_INET if peer.version == 4 else socket.AF_INET6
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.connect((str(peer), 9))
            return ip(s.getsockname()[0])
    except OSError:
        return None


def local_for(cfg: ServerConfig, peer: IPAddress) -> IPAddress | None:
    """The server's address toward ``peer``: a specific listen address of its family,
    else what the kernel would choose."""
    for la in cfg.listen:
        a = ip(la.host)
        if not a.is_unspecified and a.version == peer.version:
            return a
    return source_for(peer)


def per_class(cfg: ServerConfig, policy: AdvertisePolicy) -> list[ClassDecision]:
    """What every class of client is told right now, and why (``--explain``; a live
    server's status page calls it with its own policy)."""
    return policy.per_class(lambda peer: local_for(cfg, peer))


def explain(cfg: ServerConfig, policy: AdvertisePolicy, pool: PortPool,
            discovery: DiscoveryResult | None = None) -> list[str]:
    out = [f"natftp serve --explain: ROOT {cfg.root}; listen "
           + ", ".join(str(la) for la in cfg.listen)]
    zc = cfg.nat.zeroconf
    listening = cfg.listen + cfg.tls.listen_implicit
    loopback_only = all(ip(la.host.split("%")[0]).is_loopback for la in listening)
    masq = policy.masquerade or ("(none: serving on loopback only)" if loopback_only else
                                 "(none: nat.masquerade / --masquerade not set)")
    if zc.discover:
        masq = (f"auto ({zc.reason}): discovered from {', '.join(zc.sources)} within "
                f"{zc.discovery_timeout:g} s, in the background when serving, and "
                f"re-checked every {zc.recheck_interval:g} s; until the first answer, "
                "clients are told the local address")
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
    if discovery is not None:
        out.append("discovery, asked now as serving would: "
                   + discovery.message(zc.discovery_timeout, ports_to_forward(cfg)))
    elif zc.discover:
        out.append("discovery: not asked now (--explain sends nothing); the lines below are "
                   "what clients are told until it answers: add --discover to ask the "
                   "router, cloud metadata and --stun servers now, as serving would")
    out.append(f"passive ports: {pool.describe()}")
    out.append("What a client is told in a 227 reply (EPSV replies carry only the port):")
    for c in per_class(cfg, policy):
        label = f"  {c.client.label} {c.client.sample}"
        if loopback_only and not c.client.sample.is_loopback:
            # nothing it is told matters: it never gets a control connection
            out.append(f"{label}: cannot connect (this server listens on loopback only); "
                       "to serve it, listen on an address it can reach, e.g. "
                       f"--listen 0.0.0.0:{listening[0].port}")
            continue
        if c.decision is None:
            if c.local is not None and c.client.sample.version == 6:
                out.append(f"{label}: {c.note}; data to [{c.local}] on the EPSV port")
            else:
                out.append(f"{label}: {c.note}" + ("" if c.local else " (skipped)"))
            continue
        d = c.decision
        warn = ""
        if d.warn_unreachable and d.rule is Rule.FALLBACK:
            warn = "  WARNING: it cannot reach that; set nat.masquerade (--masquerade)"
        elif d.warn_unreachable:
            warn = "  WARNING: it probably cannot reach that"
        out.append(f"{label} (reaches us at {c.local}): told {d.address} -- {d.reason}{warn}")
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
                 isinstance(value, list) else _show(_masked(value)))
        out.append(f"  {key} = {shown}  <- {origin}")
    return out


#: keys of a table whose values are secrets ([storage] s3.*)
_SECRET_KEYS = ("secret_access_key", "session_token")


def _masked(value: object) -> object:
    if isinstance(value, dict):
        return {k: "****" if k in _SECRET_KEYS else _masked(v) for k, v in value.items()}
    return value


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)


__all__ = ["explain", "local_for", "per_class", "settings", "source_for"]
