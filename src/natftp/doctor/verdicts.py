"""The doctor's verdicts: pure functions from observations (:mod:`natftp.doctor.probes`)
to results (verdict, evidence, cause, fix). No network and no clock here, so every
diagnosis can be tested with made-up observations.

:class:`Facts` is what the run has learnt so far (which server it is, the address we
reached) that the wording needs: fixes name the server's own setting and the address
clients should be told.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from natftp.doctor import knowledge as K
from natftp.doctor.certs import CertFacts, name_matches
from natftp.doctor.probes import (
    Epsv,
    Greeting,
    Handshake,
    Login,
    PasvPair,
    Resolution,
    Sample,
    SessionError,
    Target,
    Transfer,
    Write,
    q,
)
from natftp.doctor.result import FAIL, OK, SKIP, WARN, Result
from natftp.ftpio.data import Probe
from natftp.proto.addr import AddrClass, classify
from natftp.proto.feat import Features
from natftp.proto.hostport import format_hostport
from natftp.proto.replies import Reply


@dataclass
class Facts:
    host: str
    port: int
    user: str
    server: str = "unknown"
    control_ip: str = ""  # the server address we reached
    local_ip: str = ""  # ours on that connection
    pasv_advertised: str = ""

    @property
    def public(self) -> str:
        """The address clients reach the server at (what it should advertise)."""
        return self.control_ip or self.host

    @property
    def server_lan_ip(self) -> str:
        """The server's own address, for a DNAT rule, when PASV revealed it."""
        a = self.pasv_advertised
        if a and classify(a) in (AddrClass.PRIVATE, AddrClass.CGNAT):
            return a
        return "<the server's LAN address>"

    def url(self, scheme: str) -> str:
        """The target's URL (user, no password) with ``scheme``: for a fix to quote."""
        return f"{scheme}://{self.user}@{format_hostport(self.host, self.port)}/"

    def fix(self, problem: str, **kw: str) -> str:
        values = {"public": self.public, "user": self.user, **kw}
        return K.fix(problem, self.server, **values)


def result(cid: str, title: str, verdict: str, summary: str,
           evidence: Sequence[str] = (), cause: str = "", fix: Sequence[str] = (),
           facts: dict[str, Any] | None = None) -> Result:
    return Result(cid, title, verdict, summary, list(evidence),
                  re.sub(r"\.\.(\s|$)", r".\1", cause), list(fix), facts or {})


def skip(cid: str, title: str, reason: str) -> Result:
    return Result(cid, title, SKIP, reason)


# 1. name resolution -------------------------------------------------------------------

def resolve(host: str, obs: Resolution) -> Result:
    if not obs.addresses:
        return result("resolve", "Name resolution", FAIL, f"{host} does not resolve",
                      [obs.error], cause=f"The host name {host} does not resolve to an "
                      "address.", fix=["Check the spelling of the host name and the DNS "
                                       "record (or use the server's IP address)."])
    return result("resolve", "Name resolution", OK, f"{host} -> {', '.join(obs.addresses)}",
                  [f"{a} ({classify(a).value})" for a in obs.addresses],
                  facts={"addresses": obs.addresses})


# 2. TCP connect + banner --------------------------------------------------------------

def connect(host: str, port: int, probes: list[Probe]) -> Result:
    last = probes[-1]
    evidence = [str(p) for p in probes]
    if last.ok:
        a = str(last.host)
        return result("connect", "TCP connect", OK, f"connected to {last.host}:{port}",
                      evidence, facts={"address": a, "class": classify(a).value})
    hp = format_hostport(host, port)
    causes = {
        "refused": (f"Nothing accepts connections on {hp}: the server is not running, "
                    "listens on another port or address, or a firewall rejects port "
                    f"{port}.",
                    "Start the FTP server (check it listens on this address and port: "
                    "ss -ltnp), and on a NAT router forward the control port to it."),
        "timeout": (f"Connections to {hp} get no answer: a firewall drops them or the "
                    "router in front of the server does not forward the control port.",
                    f"Open TCP port {port} in the server's firewall and forward it on the "
                    "router to the server."),
        "unreachable": (f"There is no route to {hp}: the address is wrong, or a router "
                        "answers 'host unreachable'.",
                        "Check the address and the routing/firewall between you and the "
                        "server."),
    }
    cause, fix = causes.get(last.status, (f"Cannot connect to {hp}: {last.detail}",
                                          "Check the address."))
    return result("connect", "TCP connect", FAIL, f"{last.status}: {last.detail}", evidence,
                  cause=cause, fix=[fix], facts={"status": last.status})


def banner(g: Greeting, f: Facts, t: Target, reasons: list[str]) -> Result:
    title = "Banner / server"
    if g.connect_error:
        if g.not_tls:
            return result("banner", title, FAIL, "no TLS on this port", [g.connect_error],
                          cause=_not_tls_cause(t), fix=[_not_tls_fix(t)])
        return result("banner", title, FAIL, g.connect_error,
                      cause="The connection opened but the session did not start: "
                      f"{g.connect_error}.")
    if g.reply is None:
        implicit = ("" if t.implicit_tls else
                    f"; or the port speaks implicit TLS and waits for us to start it "
                    f"(then use {t.url_with('ftps')})")
        return result("banner", title, FAIL, g.error, [g.error],
                      cause=f"The server accepted the TCP connection but sent no FTP "
                      f"greeting ({g.error}): it may not be an FTP server, or it looks up "
                      f"our name before greeting and takes longer than --timeout{implicit}.",
                      fix=["Check the port is the FTP control port; for a slow greeting "
                           "run the doctor again with --timeout 15."
                           + ("" if t.implicit_tls else
                              f" For an implicit-TLS port use {t.url_with('ftps')}")])
    r = g.reply
    verdict = OK if r.code == 220 else FAIL
    cause = "" if verdict == OK else f"The server refuses sessions: {q(r)}."
    fixes: list[str] = []
    if verdict == OK and g.delay > 1.0:
        verdict = WARN
        cause = (f"The greeting took {g.delay:.1f} s: the server looks up the client's "
                 "name (reverse DNS or ident) before answering, and clients with short "
                 "timeouts give up.")
        fixes = [f.fix("slow_banner")]
    return result("banner", title, verdict, f"{K.DISPLAY[f.server]} ({q(r)[:80]})",
                  g.lines + reasons, cause=cause, fix=fixes,
                  facts={"server": f.server, "delay_s": round(g.delay, 2)})


def _not_tls_cause(t: Target) -> str:
    return (f"{t.scheme}:// asks for TLS from the first byte (implicit TLS), but the server "
            f"on port {t.port} answered in plain text: this port speaks plain FTP, where "
            "TLS starts with AUTH TLS (explicit TLS). Nothing was logged in.")


def _not_tls_fix(t: Target) -> str:
    return (f"Use {t.url_with('ftpes')} (explicit TLS on this port), or ftps:// with the "
            "server's implicit-TLS port (conventionally 990; natftp serve "
            "--listen-implicit :990).")


# 3. TLS -----------------------------------------------------------------------------

def tls(h: Handshake, f: Facts, t: Target, cert: CertFacts | None,
        now: dt.datetime) -> Result:
    """TLS as the URL asked for it; a failure stops the run before any login (so it
    always comes with a fix)."""
    stop = " Nothing was logged in: without TLS the password would cross the network " \
           "in the clear."
    if h.refused is not None:
        return result("tls", "TLS (AUTH TLS)", FAIL, "AUTH TLS not offered", h.evidence,
                      cause=f"The server does not offer explicit FTPS: {q(h.refused)}."
                      + stop,
                      fix=[f.fix("tls_missing"),
                           f"If the server offers implicit TLS on another port, use "
                           f"ftps:// with that port; {t.url_with('ftp')} would log in "
                           "without TLS."])
    if h.not_tls:
        return result("tls", "TLS (implicit)", FAIL, "the server answered in plain text",
                      [*h.evidence, h.error], cause=_not_tls_cause(t), fix=[_not_tls_fix(t)])
    if h.no_greeting:
        return result("tls", "TLS (AUTH TLS)", FAIL, f"no greeting: {h.error}", h.evidence,
                      cause=f"No FTP greeting came on port {t.port} ({h.error}), so AUTH TLS "
                      "could not be sent; an implicit-TLS port waits silently for the "
                      "client to start TLS." + stop,
                      fix=[f"If port {t.port} speaks implicit TLS, use {t.url_with('ftps')}"])
    if h.error:
        return result("tls", "TLS (AUTH TLS)" if t.explicit_tls else "TLS (implicit)", FAIL,
                      f"TLS handshake failed: {h.error}", h.evidence,
                      cause=f"The TLS handshake failed: {h.error}." + stop,
                      fix=[f.fix("tls_broken")])
    verdict, notes, cause, facts = certificate(cert, f.host, now)
    evidence = [*h.evidence, f"TLS {h.version}", *notes]
    return result("tls", "TLS + certificate", verdict, "; ".join(notes[:2]) or "ok",
                  evidence, cause=cause,
                  fix=([f"Install a certificate for {f.host} from a CA the clients trust, "
                        "and renew it before it expires."] if cause else []),
                  facts={"version": h.version, **facts})


def certificate(cert: CertFacts | None, host: str, now: dt.datetime,
                ) -> tuple[str, list[str], str, dict[str, Any]]:
    """(verdict, notes, cause, facts) for the certificate a server presented."""
    if cert is None:
        return WARN, ["no certificate"], "The server presented no certificate.", {}
    notes: list[str] = []
    problems: list[str] = []
    verdict = OK
    end = cert.not_after
    notes.append(f"certificate valid until {end:%Y-%m-%d}")
    if end < now:
        verdict = FAIL
        problems.append(f"the certificate expired on {end:%Y-%m-%d}")
    elif cert.not_before > now:
        verdict = FAIL
        problems.append("the certificate is not valid yet")
    names = list(cert.names)
    notes.append(f"names: {', '.join(names) or '(none)'}")
    if not name_matches(host, names):
        verdict = WARN if verdict == OK else verdict
        problems.append(f"the certificate is not for {host} (names: "
                        f"{', '.join(names) or 'none'})")
    if cert.self_signed:
        verdict = WARN if verdict == OK else verdict
        problems.append("the certificate is self-signed (clients will ask to trust it)")
    cause = ("TLS certificate: " + "; ".join(problems) + ".") if problems else ""
    return verdict, problems + notes, cause, {"names": names,
                                              "not_after": end.isoformat(),
                                              "self_signed": cert.self_signed}


# 4. login, FEAT -----------------------------------------------------------------------

def _is_tls_demand(r: Reply) -> bool:
    t = r.text.lower()
    return r.code in (530, 534, 550, 521, 421) and any(
        w in t for w in ("tls", "ssl", "secure", "encrypt", "auth "))


def login(obs: Login, f: Facts, tls_used: bool, identified: list[str]) -> Result:
    e = obs.error
    if e is not None:
        return login_failed(e, f, tls_used)
    ev = [*obs.transcript, *identified]
    return result("login", "Login", OK, f"logged in as {f.user}", ev,
                  facts={"server": f.server})


def login_failed(e: SessionError, f: Facts, tls_used: bool) -> Result:
    r = e.reply
    ev = [str(e)]
    if r is not None and _is_tls_demand(r) and not tls_used:
        return result("login", "Login", FAIL, "the server requires TLS", ev,
                      cause=f"The server refuses a login without TLS: {q(r)}.",
                      fix=[f"Use explicit FTPS: {f.url('ftpes')} (the doctor and natftp "
                           "clients alike), or allow plain FTP on the server."])
    if r is not None and r.code in (530, 331, 332):
        return result("login", "Login", FAIL, "login refused", ev,
                      cause=f"The server refused the login of {f.user}: {q(r)}.",
                      fix=[f.fix("login_refused")])
    return result("login", "Login", FAIL, str(e), ev,
                  cause=f"The session did not reach a login: {e}.")


def feat(features: Features) -> Result:
    lines = list(features.lines)
    notes = [f"FEAT: {', '.join(lines) or '(none)'}"]
    missing = [x for x in ("EPSV", "MLSD", "UTF8") if not features.has(x)]
    verdict = OK if lines else WARN
    summary = (f"{len(lines)} features"
               + (f"; not advertised: {', '.join(missing)}" if missing else ""))
    return result("feat", "FEAT", verdict, summary, notes, facts={"features": lines})


# 5. PASV ----------------------------------------------------------------------------

PASV_TITLE = "PASV address + port"


def pasv(obs: PasvPair, f: Facts) -> Result:
    """The PASV answer judged against where we reached the server and which of the two
    addresses accepted a connection (scenarios S1, S2, S7)."""
    ev: list[str] = []
    if obs.first is not None:
        ev.append(f"PASV -> {q(obs.first)}")
    if obs.first is None and obs.broken.startswith("no session"):
        return result("pasv", PASV_TITLE, FAIL, obs.broken)
    if obs.advertised is None:
        if obs.broken:
            return result("pasv", PASV_TITLE, FAIL, obs.broken, ev,
                          cause=f"The control connection broke during PASV: {obs.broken}.")
        return result("pasv", PASV_TITLE, FAIL, obs.error, ev,
                      cause=f"The PASV reply is unusable: {obs.error}.",
                      fix=["Use EPSV, or fix the server's passive mode."])
    adv, port1 = obs.advertised
    cls = classify(adv)
    ctl = f.control_ip
    ev.append(f"advertised {adv}:{port1} ({cls.value}); we reached {ctl} "
              f"({classify(ctl).value})")
    probe_adv, probe_ctl = obs.advertised_probe, obs.control_probe
    if cls is AddrClass.UNSPECIFIED:
        ev.append(f"not connecting to {adv}: a client that trusts it connects to its own "
                  "machine (ECONNREFUSED)")
    elif probe_adv is not None:
        ev.append(f"connect to advertised {probe_adv}")
    if obs.second is not None:
        ev.append(f"PASV -> {q(obs.second)}")
    if probe_ctl is not None:
        ev.append(f"connect to control address, same port: {probe_ctl}")
    if obs.broken:
        return result("pasv", PASV_TITLE, FAIL, obs.broken, ev,
                      cause=f"The control connection broke during PASV: {obs.broken}.")
    same = adv == ctl
    adv_ok = probe_adv is not None and probe_adv.ok
    ctl_ok = probe_ctl is not None and probe_ctl.ok
    facts = {"advertised": adv, "port": port1, "class": cls.value, "control": ctl,
             "advertised_connect": probe_adv.status if probe_adv else "not tried",
             "control_connect": probe_ctl.status if probe_ctl else "not tried"}
    ctl_public = classify(ctl) is AddrClass.PUBLIC
    tried = f"was {probe_adv.status}" if probe_adv else "is pointless"
    unreach = "" if adv_ok else f" and a connection to it {tried}"
    works_anyway = (f" Connecting to the control address {ctl} with the same port works, "
                    "so clients that ignore the PASV address (WinSCP, .NET, curl >= 7.74 "
                    "with --ftp-skip-pasv-ip) or use EPSV get through; clients that trust "
                    "it fail." if ctl_ok else "")
    if cls is AddrClass.UNSPECIFIED:
        return result(
            "pasv", PASV_TITLE, FAIL, f"advertises {adv} (unspecified)", ev,
            cause=(f"The server answers PASV with {adv}, the unspecified address: a client "
                   "that trusts it connects to its own machine and fails with 'connection "
                   "refused' (FileZilla: ECONNREFUSED); a router's FTP helper does not "
                   "rewrite it either." + works_anyway),
            fix=[f.fix("pasv_unspecified")], facts=facts)
    if same and adv_ok:
        return result("pasv", PASV_TITLE, OK, f"{adv}:{port1} accepts connections", ev,
                      facts=facts)
    if same:
        return pasv_unreachable(ev, facts, probe_adv, port1)
    if adv_ok:
        return result(
            "pasv", PASV_TITLE, WARN,
            f"advertises {adv} (not the address we reached), but it accepts", ev,
            cause=(f"The server advertises {adv} while we reached it at {ctl}; it works "
                   "from here, but clients elsewhere that cannot reach that address (or "
                   "refuse a mismatched PASV address, as curl and FileZilla do) will fail."),
            fix=[f.fix("pasv_wrong")], facts=facts)
    internal = cls in (AddrClass.PRIVATE, AddrClass.CGNAT, AddrClass.LINK_LOCAL)
    if internal and (ctl_public or ctl_ok):
        kind = cls.value
        if ctl_public:
            why = (f"The server advertises its {kind} address {adv} while we reached the "
                   f"public {ctl}: the masquerade (public) address setting is missing")
        else:
            why = (f"The server advertises {adv} ({kind}), not the address we reached "
                   f"({ctl}){unreach}: the server is behind NAT and tells clients its own "
                   "internal address; its masquerade address setting is missing")
        fixes = [f.fix("pasv_private")]
        if ctl_ok:
            fixes.append(K.router("helper"))
        return result("pasv", PASV_TITLE, FAIL, f"advertises {adv} ({kind}){unreach}", ev,
                      cause=why + "." + works_anyway, fix=fixes, facts=facts)
    if ctl_ok:
        return result(
            "pasv", PASV_TITLE, FAIL, f"advertises {adv}{unreach}", ev,
            cause=(f"The server advertises {adv}, not the address we reached ({ctl})"
                   f"{unreach}; its passive (masquerade) address is set wrong."
                   + works_anyway),
            fix=[f.fix("pasv_wrong")], facts=facts)
    return pasv_unreachable(ev, facts, probe_ctl or probe_adv, port1)


def pasv_unreachable(ev: list[str], facts: dict[str, Any], probe: Probe | None,
                     port: int) -> Result:
    status = probe.status if probe else "error"
    if status == "timeout":
        cause = (f"The passive data port {port} does not answer (timeout): the router in "
                 "front of the server does not forward the passive port range, or a "
                 "firewall drops it.")
    else:
        cause = (f"The passive data port {port} is {status}: a firewall rejects the "
                 "passive range, or the server's passive listener is not reachable here.")
    return result("pasv", PASV_TITLE, FAIL, f"data port {port}: {status}", ev, cause=cause,
                  facts=facts)


# 6. EPSV ----------------------------------------------------------------------------

def epsv(obs: Epsv, f: Facts) -> Result:
    title = "EPSV"
    ev = [f"EPSV -> {q(obs.reply)}"] if obs.reply is not None else []
    if obs.reply is None:
        if obs.broken.startswith("no session"):
            return result("epsv", title, FAIL, obs.broken)
        return result("epsv", title, WARN, obs.broken, ev)
    if obs.reply.code != 229:
        return result("epsv", title, WARN, "EPSV not supported", ev,
                      cause="The server does not support EPSV (RFC 2428), the mode that is "
                      "immune to address problems.")
    if obs.port is None or obs.probe is None:
        return result("epsv", title, WARN, obs.error, ev)
    ev.append(f"connect {obs.probe}")
    if obs.probe.ok:
        return result("epsv", title, OK, f"port {obs.port} accepts", ev,
                      facts={"port": obs.port})
    return result("epsv", title, FAIL, f"port {obs.port}: {obs.probe.status}", ev,
                  cause=(f"The EPSV data port {obs.port} on {f.control_ip} does not accept "
                         f"({obs.probe.status}): the passive port range is not forwarded "
                         "or is firewalled."),
                  facts={"port": obs.port, "connect": obs.probe.status})


# 7. active mode ---------------------------------------------------------------------

def active(verb: str, tr: Transfer, f: Facts) -> Result:
    cid, title = f"active-{verb.lower()}", f"Active mode ({verb})"
    if tr.ok:
        src = f"{tr.source[0]}:{tr.source[1]}" if tr.source else "?"
        return result(cid, title, OK, f"the server connected back from {src}", tr.evidence,
                      facts={"source": src})
    if tr.error.startswith("refused:"):
        return result(cid, title, WARN, tr.error, tr.evidence,
                      cause=f"The server refuses {verb}: {tr.error[8:].strip()}.")
    local = f.local_ip or "this host"
    natted = bool(f.local_ip and classify(f.local_ip) is not AddrClass.PUBLIC
                  and classify(f.control_ip) is AddrClass.PUBLIC)
    if natted:
        why = (f"we are behind NAT (our address {local} is {classify(f.local_ip).value}), "
               "and the router in front of us has no FTP helper to rewrite the command, or "
               "a firewall on our side drops the connection")
    else:
        why = "a firewall on this host (or in front of it) drops inbound connections"
    cause = (f"Active mode ({verb}) fails on our side: the server did not reach our "
             f"listener on {local} ({tr.error}); {why} (scenario S3). Passive mode "
             "(EPSV/PASV) is the way for this client.")
    return result(cid, title, WARN, tr.error, tr.evidence, cause=cause,
                  fix=[K.router("active_local", server=f.control_ip)])


# 8. listing -------------------------------------------------------------------------

LISTING_TITLE = "Listing (MLSD, LIST)"


def listing(got: dict[str, Transfer], evidence: list[str], mode: str, passive: bool,
            tls: bool, reuse_required: bool, f: Facts) -> Result:
    okv = [v for v, tr in got.items() if tr.ok]
    facts = {"mode": mode, "works": okv, "tls": tls,
             "session_reuse_required": reuse_required}
    ev = list(evidence)
    if tls and okv:
        ev.append("data connections are protected (PROT P)"
                  + ("; the server requires TLS session reuse" if reuse_required
                     else "; no session reuse needed"))
    if okv:
        n = len(got[okv[0]].data.splitlines())
        return result("listing", LISTING_TITLE, OK if passive else WARN,
                      f"{' and '.join(okv)} over {mode.upper()}: {n} entries", ev,
                      cause=("" if passive else
                             "Listings only work in active mode; passive mode is broken."),
                      facts=facts)
    err = "; ".join(f"{v}: {tr.error}" for v, tr in got.items())
    reuse = tls and any("reuse" in tr.error.lower() for tr in got.values())
    return result("listing", LISTING_TITLE, FAIL, err, ev,
                  cause=f"The listing failed over {mode.upper()}: {err}.",
                  fix=[f.fix("tls_reuse")] if reuse else [], facts=facts)


def no_data_mode() -> Result:
    return result("listing", LISTING_TITLE, FAIL, "no data connection mode works",
                  cause="No data connection mode works from here, so no listing or "
                  "transfer can succeed.")


# 9. write ---------------------------------------------------------------------------

WRITE_TITLE = "Upload, read back, delete"


def write(w: Write, f: Facts) -> Result:
    ev = w.evidence
    up = w.upload
    if up is None:
        return result("write", WRITE_TITLE, FAIL, w.broken)  # no session
    if not up.ok:
        code = up.final.code if up.final else 0
        denied = code in (550, 553, 532, 450, 452) or "permission" in up.error.lower()
        return result("write", WRITE_TITLE, FAIL, f"upload refused: {up.error}", ev,
                      cause=(f"The server refused the upload of {w.name}: "
                             f"{up.error.rstrip('.')}."
                             + (" Writes are disabled for this user." if denied else "")),
                      fix=[f.fix("write_denied")] if denied else [])
    if w.broken:
        return result("write", WRITE_TITLE, FAIL, w.broken, ev,
                      cause=f"The control connection broke during the write test: "
                      f"{w.broken}.")
    back = w.readback
    same = back is not None and back.ok and back.data == w.payload
    if not same:
        got = len(back.data) if back is not None else 0
        why = (back.error if back is not None else "") or "content differs"
        return result("write", WRITE_TITLE, FAIL, "read-back differs", ev,
                      cause=f"{w.name} came back different ({got} of {len(w.payload)} "
                      f"bytes): {why}.")
    if w.delete is None or w.delete.code != 250:
        said = q(w.delete) if w.delete is not None else "no reply"
        return result("write", WRITE_TITLE, WARN, f"uploaded, read back, not deleted: {said}",
                      ev, cause=f"The test file {w.name} could not be deleted: {said}.",
                      fix=[f.fix("write_denied")])
    return result("write", WRITE_TITLE, OK,
                  f"{len(w.payload)} bytes uploaded, read back identical, deleted", ev)


# 10. plain vs TLS PASV --------------------------------------------------------------

PASV_TLS_TITLE = "PASV plain vs TLS (router helper)"


def pasv_plain_vs_tls(plain: tuple[Reply | None, tuple[str, int] | None],
                      protected: tuple[Reply | None, tuple[str, int] | None],
                      f: Facts) -> Result:
    ev = []
    if plain[0] is not None:
        ev.append(f"plain: PASV -> {q(plain[0])}")
    if protected[0] is not None:
        ev.append(f"TLS:   PASV -> {q(protected[0])}")
    gp, gt = plain[1], protected[1]
    if gp is None or gt is None:
        return skip("pasv-tls", PASV_TLS_TITLE, "PASV not answered on both")
    if gp[0] == gt[0]:
        return result("pasv-tls", PASV_TLS_TITLE, OK, f"both advertise {gp[0]}", ev,
                      facts={"plain": gp[0], "tls": gt[0]})
    return result(
        "pasv-tls", PASV_TLS_TITLE, WARN, f"plain advertises {gp[0]}, TLS advertises {gt[0]}",
        ev, cause=(f"A router on the path rewrites PASV replies on the plain control channel "
                   f"({gt[0]} -> {gp[0]}) but cannot under TLS: its FTP helper is blind to "
                   "encrypted control channels, so FTPS clients see the server's own "
                   f"address {gt[0]}."),
        fix=[K.router("helper_blind", public=f.public), f.fix("pasv_private")],
        facts={"plain": gp[0], "tls": gt[0]})


# 11. passive port sample -------------------------------------------------------------

RANGE_TITLE = "Passive port range sample"


def pasv_range(obs: Sample, earlier_ports: list[int], f: Facts) -> Result:
    if not obs.ports:
        return skip("pasv-range", RANGE_TITLE, "PASV not answered")
    ports_all = sorted(set(obs.ports + earlier_ports))
    low, high = min(ports_all), max(ports_all)
    ev = [*obs.evidence, f"ports seen: {', '.join(map(str, ports_all))} "
          f"(the range spans at least {low}-{high})"]
    ev += [f"connect {p}" for p in obs.probes]
    bad = [p for p in obs.probes if not p.ok]
    facts = {"ports": ports_all, "low": low, "high": high,
             "status": [p.status for p in obs.probes]}
    n = len(obs.probes)
    if not bad:
        return result("pasv-range", RANGE_TITLE, OK,
                      f"{n} of {n} sampled ports accept ({low}-{high})", ev, facts=facts)
    statuses = sorted({p.status for p in bad})
    timeouts = any(p.status == "timeout" for p in bad)
    cause = (f"{len(bad)} of {n} sampled passive ports (seen: {low}-{high}) do not accept "
             f"at {f.control_ip} ({'/'.join(statuses)}): "
             + ("the router does not forward the passive range (or a firewall drops it)."
                if timeouts else "a firewall rejects the passive range."))
    return result("pasv-range", RANGE_TITLE, FAIL, f"{len(bad)} sampled ports {statuses}", ev,
                  cause=cause,
                  fix=[K.router("forward_range", low=str(low), high=str(high),
                                server_ip=f.server_lan_ip),
                       f.fix("passive_range", low=str(low), high=str(high))],
                  facts=facts)
