"""The doctor's checks, run in order against one FTP server.

Each check is a method returning a :class:`Result`. Checks that need a logged-in session
open their own (a hung data connection then cannot spoil the next check), so a run makes
a handful of short control connections. Every network wait has a timeout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import socket
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

from natftp.doctor import knowledge as K
from natftp.doctor.conn import (
    ConnectOutcome,
    Control,
    FtpClosed,
    FtpTimeout,
    classify_oserror,
    close_writer,
    open_data,
    read_all,
    tcp_probe,
    wrap_accepted,
)
from natftp.doctor.result import FAIL, OK, SKIP, WARN, Report, Result
from natftp.proto.addr import (
    AddrClass,
    AddressError,
    classify,
    format_eprt_arg,
    format_port_arg,
    ip,
    parse_227,
    parse_229,
)
from natftp.proto.replies import Reply
from natftp.proto.url import URLError, parse_url

TargetError = URLError  # the URL does not parse (natftp.proto.url says why, masked)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    user: str
    password: str
    implicit_tls: bool = False
    explicit_tls: bool = False

    @classmethod
    def parse(cls, url: str, implicit_tls: bool = False) -> Target:
        """``ftp://``, ``ftpes://`` (explicit TLS) or ``ftps://`` (implicit TLS); a bare
        ``host[:port]`` is ftp://."""
        u = parse_url(url, default_scheme="ftps" if implicit_tls else "ftp")
        if implicit_tls and u.scheme != "ftps":  # --implicit-tls: read it as ftps://
            u = parse_url("ftps://" + url.strip().split("://", 1)[1])
        return cls(u.host, u.port, u.user or "anonymous",
                   u.password if u.password is not None else "doctor@natftp",
                   u.tls == "implicit", u.tls == "explicit")

    def display(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"ftp://{self.user}@{h}:{self.port}/"


class SessionError(Exception):
    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass
class Transfer:
    ok: bool
    data: bytes = b""
    evidence: list[str] = field(default_factory=list)
    error: str = ""
    final: Reply | None = None
    connect: ConnectOutcome | None = None
    source: tuple[str, int] | None = None  # who connected back (active mode)
    broken: bool = False  # control connection state unknown: drop it


def _q(r: Reply) -> str:
    return str(r).replace("\r\n", " | ").replace("\n", " | ")


def _is_tls_demand(r: Reply) -> bool:
    t = r.text.lower()
    return r.code in (530, 534, 550, 521, 421) and any(
        w in t for w in ("tls", "ssl", "secure", "encrypt", "auth "))


class Doctor:
    def __init__(self, target: Target, tls: bool = False, write: bool = False,
                 timeout: float = 3.0, samples: int = 5) -> None:
        self.t = target
        self.tls = tls or target.implicit_tls
        self.explicit_tls = tls and not target.implicit_tls
        self.write = write
        self.timeout = timeout
        self.samples = samples
        self.results: list[Result] = []
        self.server = "unknown"
        self.texts: dict[str, str] = {}
        self.addrs: list[str] = []
        self.control_ip = ""  # the server address we reached
        self.local_ip = ""
        self.logged_in = False
        self.features: list[str] = []
        self.pasv_addr_usable = False
        self.pasv_control_usable = False
        self.epsv_usable = False
        self.pasv_advertised: str = ""
        self.working_mode: str = ""
        self.tls_reuse: bool = False
        self.range_ports: list[int] = []
        self.passive_blocked = False
        self.reuse_required = False
        self.banner_delay = 0.0

    @property
    def server_lan_ip(self) -> str:
        """The server's own address, for a DNAT rule, when PASV revealed it."""
        a = self.pasv_advertised
        if a and classify(a) in (AddrClass.PRIVATE, AddrClass.CGNAT):
            return a
        return "<the server's LAN address>"

    # -- helpers ------------------------------------------------------------------

    def add(self, r: Result) -> Result:
        r.cause = re.sub(r"\.\.(\s|$)", r".\1", r.cause)
        self.results.append(r)
        return r

    def skip(self, cid: str, title: str, reason: str) -> Result:
        return self.add(Result(cid, title, SKIP, reason))

    @property
    def public(self) -> str:
        """The address clients reach the server at (what it should advertise)."""
        return self.control_ip or self.t.host

    def fix(self, problem: str, **kw: str) -> str:
        values = {"public": self.public, "user": self.t.user, **kw}
        return K.fix(problem, self.server, **values)

    async def session(self, tls: bool | None = None) -> Control:
        """Connect, read the banner, optionally AUTH TLS + PBSZ/PROT, and log in."""
        use_tls = self.tls if tls is None else tls
        host = self.control_ip or self.t.host
        try:
            c = await Control.open(host, self.t.port, self.timeout,
                                   implicit_tls=self.t.implicit_tls and use_tls)
        except (TimeoutError, OSError, ssl.SSLError) as e:
            raise SessionError(f"cannot connect: {classify_oserror(e)[1]}") from e
        try:
            r = await c.reply(self.timeout + 5)
            while r.kind == 1:
                r = await c.reply()
            if r.code != 220:
                raise SessionError(f"banner {_q(r)}", r)
            if use_tls and not self.t.implicit_tls:
                r = await c.cmd("AUTH", "TLS")
                if r.code != 234:
                    raise SessionError(f"AUTH TLS refused: {_q(r)}", r)
                await c.start_tls(None)
            if use_tls:
                await c.cmd("PBSZ", "0")
                r = await c.cmd("PROT", "P")
                if r.code != 200:
                    raise SessionError(f"PROT P refused: {_q(r)}", r)
            r = await c.cmd("USER", self.t.user)
            if r.code == 331:
                # Servers delay a refused login (pyftpdlib 3 s, vsftpd 1 s).
                r = await c.cmd("PASS", self.t.password, timeout=self.timeout + 5)
            if r.code == 332:
                raise SessionError(f"the server wants an ACCT: {_q(r)}", r)
            if r.code not in (230, 202):
                raise SessionError(f"login refused: {_q(r)}", r)
            await c.cmd("TYPE", "I")
            return c
        except (TimeoutError, FtpClosed, FtpTimeout, OSError, ssl.SSLError) as e:
            c.abort()
            raise SessionError((str(e) or type(e).__name__) + " after: "
                               + " / ".join(c.transcript[-3:])) from e
        except SessionError:
            await c.close()
            raise

    # -- the run ------------------------------------------------------------------

    async def run(self) -> Report:
        steps = [self.check_resolve, self.check_connect, self.check_tls, self.check_login,
                 self.check_feat, self.check_pasv, self.check_epsv,
                 self.check_active_eprt, self.check_active_port, self.check_listing,
                 self.check_write, self.check_pasv_plain_vs_tls, self.check_pasv_sample]
        for step in steps:
            try:
                await step()
            except Exception as e:  # a doctor must not crash on a weird server
                name = step.__name__.removeprefix("check_")
                self.add(Result(name, name, FAIL, f"internal error: {type(e).__name__}: {e}",
                                cause=f"The doctor hit an unexpected error in {name}: {e}"))
        return Report(self.t.display(), self.server, K.DISPLAY[self.server], self.results)

    # 1. name resolution ----------------------------------------------------------

    async def check_resolve(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(self.t.host, self.t.port, type=socket.SOCK_STREAM),
                self.timeout)
        except (TimeoutError, OSError) as e:
            self.add(Result("resolve", "Name resolution", FAIL,
                            f"{self.t.host} does not resolve",
                            [f"getaddrinfo({self.t.host!r}): {e}"],
                            cause=f"The host name {self.t.host} does not resolve to an address.",
                            fix=["Check the spelling of the host name and the DNS record "
                                 "(or use the server's IP address)."]))
            return
        seen: list[str] = []
        for info in infos:
            a = str(info[4][0])
            if a not in seen:
                seen.append(a)
        self.addrs = seen
        self.add(Result("resolve", "Name resolution", OK,
                        f"{self.t.host} -> {', '.join(seen)}",
                        [f"{a} ({classify(a).value})" for a in seen],
                        facts={"addresses": seen}))

    # 2. TCP connect + banner -----------------------------------------------------

    async def check_connect(self) -> None:
        if not self.addrs:
            self.skip("connect", "TCP connect", "the name did not resolve")
            self.skip("banner", "Banner / server", "no connection")
            return
        evidence: list[str] = []
        outcome: ConnectOutcome | None = None
        for a in self.addrs[:3]:
            outcome = await tcp_probe(a, self.t.port, self.timeout)
            evidence.append(str(outcome))
            if outcome.ok:
                break
        assert outcome is not None
        if not outcome.ok:
            hp = f"{self.t.host}:{self.t.port}"
            causes = {
                "refused": (f"Nothing accepts connections on {hp}: the server is not running, "
                            "listens on another port or address, or a firewall rejects port "
                            f"{self.t.port}.",
                            "Start the FTP server (check it listens on this address and "
                            "port: ss -ltnp), and on a NAT router forward the control port "
                            "to it."),
                "timeout": (f"Connections to {hp} get no answer: a firewall drops them or the "
                            "router in front of the server does not forward the control port.",
                            f"Open TCP port {self.t.port} in the server's firewall and forward "
                            "it on the router to the server."),
                "unreachable": (f"There is no route to {hp}: the address is wrong, or a "
                                "router answers 'host unreachable'.",
                                "Check the address and the routing/firewall between you and "
                                "the server."),
            }
            cause, fix = causes.get(outcome.status, (f"Cannot connect to {hp}: "
                                                     f"{outcome.detail}", "Check the address."))
            self.add(Result("connect", "TCP connect", FAIL,
                            f"{outcome.status}: {outcome.detail}", evidence,
                            cause=cause, fix=[fix], facts={"status": outcome.status}))
            self.skip("banner", "Banner / server", "no connection")
            return
        self.control_ip = str(ip(outcome.host))
        self.local_ip = outcome.local[0] if outcome.local else ""
        self.add(Result("connect", "TCP connect", OK,
                        f"connected to {outcome.host}:{self.t.port}", evidence,
                        facts={"address": self.control_ip,
                               "class": classify(self.control_ip).value}))
        await self.check_banner()

    async def check_banner(self) -> None:
        try:
            c = await Control.open(self.control_ip, self.t.port, self.timeout,
                                   implicit_tls=self.t.implicit_tls)
        except (TimeoutError, OSError, ssl.SSLError) as e:
            hint = " (is this really implicit FTPS?)" if self.t.implicit_tls else ""
            self.add(Result("banner", "Banner / server", FAIL, f"{e}{hint}",
                            cause=f"The connection opened but the session did not start: {e}."))
            return
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            lines: list[str] = []
            # A greeting can be slow (reverse DNS/ident lookups); wait a little longer.
            r = await c.reply(self.timeout + 5)
            while r.kind == 1:
                lines.append(_q(r))
                r = await c.reply()
            lines.append(_q(r))
        except (FtpClosed, FtpTimeout) as e:
            c.abort()
            self.add(Result("banner", "Banner / server", FAIL, str(e), [str(e)],
                            cause=f"The server accepted the TCP connection but sent no FTP "
                                  f"greeting ({e}); it may not be an FTP server, or it expects "
                                  "implicit TLS (port 990: use --implicit-tls).",
                            fix=["Check the port is the FTP control port."]))
            return
        await c.close()
        self.texts["banner"] = r.text
        self.server, reasons = K.identify(self.texts)
        self.banner_delay = loop.time() - t0
        verdict = OK if r.code == 220 else FAIL
        cause = "" if verdict == OK else f"The server refuses sessions: {_q(r)}."
        fixes: list[str] = []
        if verdict == OK and self.banner_delay > 1.0:
            verdict = WARN
            cause = (f"The greeting took {self.banner_delay:.1f} s: the server looks up the "
                     "client's name (reverse DNS or ident) before answering, and clients "
                     "with short timeouts give up.")
            fixes = [self.fix("slow_banner")]
        self.add(Result("banner", "Banner / server", verdict,
                        f"{K.DISPLAY[self.server]} ({_q(r)[:80]})", lines + reasons,
                        cause=cause, fix=fixes,
                        facts={"server": self.server,
                               "delay_s": round(self.banner_delay, 2)}))

    # 3. TLS ----------------------------------------------------------------------

    async def check_tls(self) -> None:
        if not self.tls:
            return
        if not self.control_ip:
            self.skip("tls", "TLS", "no connection")
            return
        evidence: list[str] = []
        try:
            c = await Control.open(self.control_ip, self.t.port, self.timeout,
                                   implicit_tls=self.t.implicit_tls)
            r = await c.reply()
            while r.kind == 1:
                r = await c.reply()
            evidence.append(_q(r))
            if not self.t.implicit_tls:
                r = await c.cmd("AUTH", "TLS")
                evidence.append(f"AUTH TLS -> {_q(r)}")
                if r.code != 234:
                    await c.close()
                    self.add(Result("tls", "TLS (AUTH TLS)", FAIL, "AUTH TLS not offered",
                                    evidence,
                                    cause=f"The server does not offer explicit FTPS: {_q(r)}.",
                                    fix=[self.fix("tls_missing")]))
                    self.tls = False
                    return
                await c.start_tls(None)
        except (TimeoutError, OSError, ssl.SSLError, FtpClosed, FtpTimeout) as e:
            self.add(Result("tls", "TLS (AUTH TLS)", FAIL, f"TLS handshake failed: {e}",
                            evidence, cause=f"The TLS handshake failed: {e}."))
            self.tls = False
            return
        obj = c.ssl_object
        der = obj.getpeercert(binary_form=True) if obj else None
        version = obj.version() if obj else "?"
        await c.close()
        verdict, notes, cause, facts = self._inspect_cert(der)
        evidence.append(f"TLS {version}")
        evidence.extend(notes)
        self.add(Result("tls", "TLS + certificate", verdict, "; ".join(notes[:2]) or "ok",
                        evidence, cause=cause,
                        fix=(["Install a certificate for "
                              f"{self.t.host} from a CA the clients trust, and renew it before "
                              "it expires."] if cause else []),
                        facts={"version": version, **facts}))

    def _inspect_cert(self, der: bytes | None) -> tuple[str, list[str], str, dict[str, Any]]:
        if not der:
            return WARN, ["no certificate"], "The server presented no certificate.", {}
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_der_x509_certificate(der)
        notes: list[str] = []
        problems: list[str] = []
        verdict = OK
        now = dt.datetime.now(dt.UTC)
        end = cert.not_valid_after_utc
        notes.append(f"certificate valid until {end:%Y-%m-%d}")
        if end < now:
            verdict = FAIL
            problems.append(f"the certificate expired on {end:%Y-%m-%d}")
        elif cert.not_valid_before_utc > now:
            verdict = FAIL
            problems.append("the certificate is not valid yet")
        names: list[str] = []
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names += san.get_values_for_type(x509.DNSName)
            names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            pass
        for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            if str(a.value) not in names:
                names.append(str(a.value))
        notes.append(f"names: {', '.join(names) or '(none)'}")
        if not _name_matches(self.t.host, names):
            if verdict == OK:
                verdict = WARN
            problems.append(f"the certificate is not for {self.t.host} (names: "
                            f"{', '.join(names) or 'none'})")
        if cert.issuer == cert.subject:
            if verdict == OK:
                verdict = WARN
            problems.append("the certificate is self-signed (clients will ask to trust it)")
        notes = problems + notes
        cause = ("TLS certificate: " + "; ".join(problems) + ".") if problems else ""
        return verdict, notes, cause, {"names": names, "not_after": end.isoformat(),
                                       "self_signed": cert.issuer == cert.subject}

    # 4. login, FEAT -------------------------------------------------------------

    async def check_login(self) -> None:
        if not self.control_ip:
            self.skip("login", "Login", "no connection")
            return
        try:
            c = await self.session()
        except SessionError as e:
            r = e.reply
            ev = [str(e)]
            if r is not None and _is_tls_demand(r) and not self.tls:
                self.add(Result("login", "Login", FAIL, "the server requires TLS", ev,
                                cause=f"The server refuses a login without TLS: {_q(r)}.",
                                fix=["Run the doctor (and your client) with --tls (explicit "
                                     "FTPS), or allow plain FTP on the server."]))
            elif r is not None and r.code in (530, 331, 332):
                self.add(Result("login", "Login", FAIL, "login refused", ev,
                                cause=f"The server refused the login of {self.t.user}: "
                                      f"{_q(r)}.",
                                fix=["Check the user name and password, and that the user "
                                     "may log in to FTP (vsftpd: local_enable=YES, shell in "
                                     "/etc/shells, not in ftpusers)."]))
            else:
                self.add(Result("login", "Login", FAIL, str(e), ev,
                                cause=f"The session did not reach a login: {e}."))
            return
        self.logged_in = True
        ev = list(c.transcript)
        for name in ("SYST", "HELP"):
            try:
                r = await c.cmd(name)
                self.texts[name.lower()] = r.text
                ev.append(f"{name} -> {_q(r)[:200]}")
            except (FtpClosed, FtpTimeout):
                break
        try:
            r = await c.cmd("FEAT")
            self.texts["feat"] = r.text
            if r.code == 211:
                self.features = [ln.strip() for ln in r.lines[1:-1] if ln.strip()]
        except (FtpClosed, FtpTimeout):
            pass
        await c.close()
        before = self.server
        self.server, reasons = K.identify(self.texts)
        if self.server != before:
            ev.append(f"server identified as {K.DISPLAY[self.server]}: {'; '.join(reasons)}")
        self.add(Result("login", "Login", OK, f"logged in as {self.t.user}", ev,
                        facts={"server": self.server}))

    async def check_feat(self) -> None:
        if not self.logged_in:
            self.skip("feat", "FEAT", "not logged in")
            return
        f = {x.split(" ", 1)[0].upper() for x in self.features}
        notes = [f"FEAT: {', '.join(self.features) or '(none)'}"]
        if "MLST" in f:
            f.add("MLSD")  # RFC 3659: MLST in FEAT implies MLSD
        missing = [x for x in ("EPSV", "MLSD", "UTF8") if x not in f]
        verdict = OK if self.features else WARN
        summary = (f"{len(self.features)} features" +
                   (f"; not advertised: {', '.join(missing)}" if missing else ""))
        self.add(Result("feat", "FEAT", verdict, summary, notes,
                        facts={"features": self.features}))

    # 5. PASV ---------------------------------------------------------------------

    async def _pasv(self, c: Control) -> tuple[Reply, tuple[str, int] | None, str]:
        r = await c.cmd("PASV")
        if r.code != 227:
            return r, None, f"PASV refused: {_q(r)}"
        try:
            a, p = parse_227(r.text)
        except AddressError as e:
            return r, None, str(e)
        return r, (str(a), p), ""

    async def check_pasv(self) -> None:
        title = "PASV address + port"
        if not self.logged_in:
            self.skip("pasv", title, "not logged in")
            return
        if ":" in self.control_ip:
            self.skip("pasv", title, "IPv6 control connection: PASV carries IPv4 only")
            return
        try:
            c = await self.session()
        except SessionError as e:
            self.add(Result("pasv", title, FAIL, f"no session: {e}"))
            return
        ev: list[str] = []
        try:
            r1, got1, err = await self._pasv(c)
            ev.append(f"PASV -> {_q(r1)}")
            if got1 is None:
                await c.close()
                self.add(Result("pasv", title, FAIL, err, ev,
                                cause=f"The PASV reply is unusable: {err}.",
                                fix=["Use EPSV, or fix the server's passive mode."]))
                return
            adv, port1 = got1
            self.pasv_advertised = adv
            cls = classify(adv)
            ev.append(f"advertised {adv}:{port1} ({cls.value}); we reached "
                      f"{self.control_ip} ({classify(self.control_ip).value})")
            probe_adv: ConnectOutcome | None = None
            if cls is AddrClass.UNSPECIFIED:
                ev.append(f"not connecting to {adv}: a client that trusts it connects to its "
                          "own machine (ECONNREFUSED)")
            else:
                probe_adv = await tcp_probe(adv, port1, self.timeout)
                ev.append(f"connect to advertised {probe_adv}")
            r2, got2, err2 = await self._pasv(c)
            ev.append(f"PASV -> {_q(r2)}")
            probe_ctl: ConnectOutcome | None = None
            if got2 is not None:
                probe_ctl = await tcp_probe(self.control_ip, got2[1], self.timeout)
                ev.append(f"connect to control address, same port: {probe_ctl}")
        except (FtpClosed, FtpTimeout) as e:
            c.abort()
            self.add(Result("pasv", title, FAIL, str(e), ev,
                            cause=f"The control connection broke during PASV: {e}."))
            return
        await c.close()
        self.range_ports += [port1] + ([got2[1]] if got2 else [])
        same = adv == self.control_ip
        adv_ok = probe_adv is not None and probe_adv.ok
        ctl_ok = probe_ctl is not None and probe_ctl.ok
        self.pasv_addr_usable = adv_ok and cls is not AddrClass.UNSPECIFIED
        self.pasv_control_usable = ctl_ok
        facts = {"advertised": adv, "port": port1, "class": cls.value,
                 "control": self.control_ip,
                 "advertised_connect": probe_adv.status if probe_adv else "not tried",
                 "control_connect": probe_ctl.status if probe_ctl else "not tried"}
        ctl_public = classify(self.control_ip) is AddrClass.PUBLIC
        tried = f"was {probe_adv.status}" if probe_adv else "is pointless"
        unreach = "" if adv_ok else f" and a connection to it {tried}"
        works_anyway = (f" Connecting to the control address {self.control_ip} with the same "
                        "port works, so clients that ignore the PASV address (WinSCP, .NET, "
                        "curl >= 7.74 with --ftp-skip-pasv-ip) or use EPSV get through; "
                        "clients that trust it fail." if ctl_ok else "")
        if cls is AddrClass.UNSPECIFIED:
            self.add(Result(
                "pasv", title, FAIL, f"advertises {adv} (unspecified)", ev,
                cause=(f"The server answers PASV with {adv}, the unspecified address: a client "
                       "that trusts it connects to its own machine and fails with 'connection "
                       "refused' (FileZilla: ECONNREFUSED); a router's FTP helper does not "
                       "rewrite it either." + works_anyway),
                fix=[self.fix("pasv_unspecified")], facts=facts))
            return
        if same and adv_ok:
            self.add(Result("pasv", title, OK, f"{adv}:{port1} accepts connections", ev,
                            facts=facts))
            return
        if same:
            self._pasv_unreachable(ev, facts, probe_adv, port1)
            return
        if adv_ok:
            self.add(Result(
                "pasv", title, WARN,
                f"advertises {adv} (not the address we reached), but it accepts", ev,
                cause=(f"The server advertises {adv} while we reached it at "
                       f"{self.control_ip}; it works from here, but clients elsewhere that "
                       "cannot reach that address (or refuse a mismatched PASV address, as "
                       "curl and FileZilla do) will fail."),
                fix=[self.fix("pasv_wrong")], facts=facts))
            return
        internal = cls in (AddrClass.PRIVATE, AddrClass.CGNAT, AddrClass.LINK_LOCAL)
        if internal and (ctl_public or ctl_ok):
            kind = cls.value
            if ctl_public:
                why = (f"The server advertises its {kind} address {adv} while we reached the "
                       f"public {self.control_ip}: the masquerade (public) address setting is "
                       "missing")
            else:
                why = (f"The server advertises {adv} ({kind}), not the address we reached "
                       f"({self.control_ip}){unreach}: the server is behind NAT and tells "
                       "clients its own internal address; its masquerade address setting is "
                       "missing")
            fixes = [self.fix("pasv_private")]
            if ctl_ok:
                fixes.append(K.router("helper"))
            self.add(Result("pasv", title, FAIL, f"advertises {adv} ({kind}){unreach}", ev,
                            cause=why + "." + works_anyway, fix=fixes, facts=facts))
            return
        if ctl_ok:
            self.add(Result(
                "pasv", title, FAIL, f"advertises {adv}{unreach}", ev,
                cause=(f"The server advertises {adv}, not the address we reached "
                       f"({self.control_ip}){unreach}; its passive (masquerade) address "
                       "is set wrong." + works_anyway),
                fix=[self.fix("pasv_wrong")], facts=facts))
            return
        self._pasv_unreachable(ev, facts, probe_ctl or probe_adv, port1)

    def _pasv_unreachable(self, ev: list[str], facts: dict[str, Any],
                          probe: ConnectOutcome | None, port: int) -> None:
        status = probe.status if probe else "error"
        if status == "timeout":
            cause = (f"The passive data port {port} does not answer (timeout): the router in "
                     "front of the server does not forward the passive port range, or a "
                     "firewall drops it.")
        else:
            cause = (f"The passive data port {port} is {status}: a firewall rejects the "
                     "passive range, or the server's passive listener is not reachable here.")
        self.add(Result("pasv", "PASV address + port", FAIL, f"data port {port}: {status}", ev,
                        cause=cause, facts=facts))
        self.passive_blocked = True

    # 6. EPSV ---------------------------------------------------------------------

    async def check_epsv(self) -> None:
        title = "EPSV"
        if not self.logged_in:
            self.skip("epsv", title, "not logged in")
            return
        try:
            c = await self.session()
        except SessionError as e:
            self.add(Result("epsv", title, FAIL, f"no session: {e}"))
            return
        ev: list[str] = []
        try:
            r = await c.cmd("EPSV")
        except (FtpClosed, FtpTimeout) as e:
            c.abort()
            self.add(Result("epsv", title, WARN, str(e), ev))
            return
        ev.append(f"EPSV -> {_q(r)}")
        if r.code != 229:
            await c.close()
            self.add(Result("epsv", title, WARN, "EPSV not supported", ev,
                            cause="The server does not support EPSV (RFC 2428), the mode that "
                                  "is immune to address problems."))
            return
        try:
            port = parse_229(r.text)
        except AddressError as e:
            await c.close()
            self.add(Result("epsv", title, WARN, str(e), ev))
            return
        probe = await tcp_probe(self.control_ip, port, self.timeout)
        ev.append(f"connect {probe}")
        await c.close()
        self.range_ports.append(port)
        if probe.ok:
            self.epsv_usable = True
            self.add(Result("epsv", title, OK, f"port {port} accepts", ev,
                            facts={"port": port}))
            return
        self.add(Result("epsv", title, FAIL, f"port {port}: {probe.status}", ev,
                        cause=(f"The EPSV data port {port} on {self.control_ip} does not "
                               f"accept ({probe.status}): the passive port range is not "
                               "forwarded or is firewalled."),
                        facts={"port": port, "connect": probe.status}))

    # 7. active mode --------------------------------------------------------------

    async def check_active_eprt(self) -> None:
        await self._check_active("EPRT")

    async def check_active_port(self) -> None:
        await self._check_active("PORT")

    async def _check_active(self, verb: str) -> None:
        cid, title = f"active-{verb.lower()}", f"Active mode ({verb})"
        if not self.logged_in:
            self.skip(cid, title, "not logged in")
            return
        if verb == "PORT" and ":" in self.control_ip:
            self.skip(cid, title, "IPv6 control connection: PORT carries IPv4 only")
            return
        try:
            c = await self.session()
        except SessionError as e:
            self.add(Result(cid, title, FAIL, f"no session: {e}"))
            return
        tr = await self._transfer(c, "NLST" if verb == "PORT" else "LIST", "",
                                  mode=verb.lower())
        if tr.broken:
            c.abort()
        else:
            await c.close()
        if tr.ok:
            src = f"{tr.source[0]}:{tr.source[1]}" if tr.source else "?"
            self.add(Result(cid, title, OK, f"the server connected back from {src}",
                            tr.evidence, facts={"source": src}))
            return
        if tr.error.startswith("refused:"):
            self.add(Result(cid, title, WARN, tr.error, tr.evidence,
                            cause=f"The server refuses {verb}: {tr.error[8:].strip()}."))
            return
        local = self.local_ip or "this host"
        natted = (self.local_ip and classify(self.local_ip) is not AddrClass.PUBLIC
                  and classify(self.control_ip) is AddrClass.PUBLIC)
        why = ("we are behind NAT (our address {local} is {cls}), and the router in front of "
               "us has no FTP helper to rewrite the command, or a firewall on our side drops "
               "the connection" if natted else
               "a firewall on this host (or in front of it) drops inbound connections")
        why = why.format(local=local, cls=classify(self.local_ip).value if natted else "")
        cause = (f"Active mode ({verb}) fails on our side: the server did not reach our "
                 f"listener on {local} ({tr.error}); {why} (scenario S3). Passive mode "
                 "(EPSV/PASV) is the way for this client.")
        self.add(Result(cid, title, WARN, tr.error, tr.evidence, cause=cause,
                        fix=[K.router("active_local", server=self.control_ip)]))

    # 8. listing ------------------------------------------------------------------

    def _modes(self) -> list[str]:
        modes = []
        if self.epsv_usable:
            modes.append("epsv")
        if self.pasv_addr_usable:
            modes.append("pasv")
        if self.pasv_control_usable:
            modes.append("pasv-control")
        for r in self.results:
            if r.id == "active-eprt" and r.verdict == OK:
                modes.append("eprt")
            if r.id == "active-port" and r.verdict == OK:
                modes.append("port")
        return modes

    async def check_listing(self) -> None:
        title = "Listing (MLSD, LIST)"
        if not self.logged_in:
            self.skip("listing", title, "not logged in")
            return
        modes = self._modes()
        if not modes:
            self.add(Result("listing", title, FAIL, "no data connection mode works",
                            cause="No data connection mode works from here, so no listing "
                                  "or transfer can succeed."))
            return
        ev: list[str] = []
        passive = [m for m in modes if m not in ("eprt", "port")]
        mode = passive[0] if passive else modes[0]
        got: dict[str, Transfer] = {}
        for verb in ("MLSD", "LIST"):
            try:
                c = await self.session()
            except SessionError as e:
                ev.append(f"no session: {e}")
                break
            tr = await self._transfer(c, verb, "", mode=mode)
            (c.abort() if tr.broken else await c.close())
            ev.extend(tr.evidence)
            if not tr.ok and self.tls and not self.tls_reuse and verb == "LIST":
                # Does the server insist on TLS session reuse (vsftpd's default)?
                try:
                    c = await self.session()
                    self.tls_reuse = True
                    tr2 = await self._transfer(c, verb, "", mode=mode)
                    (c.abort() if tr2.broken else await c.close())
                    ev.append("retry with the control connection's TLS session reused:")
                    ev.extend(tr2.evidence)
                    if tr2.ok:
                        tr = tr2
                        self.reuse_required = True
                    else:
                        self.tls_reuse = False
                except SessionError as e:
                    ev.append(f"no session: {e}")
            got[verb] = tr
        okv = [v for v, tr in got.items() if tr.ok]
        facts = {"mode": mode, "works": okv, "tls": self.tls,
                 "session_reuse_required": self.reuse_required}
        if self.tls and okv:
            ev.append("data connections are protected (PROT P)" +
                      ("; the server requires TLS session reuse" if self.reuse_required
                       else "; no session reuse needed"))
        if okv:
            self.working_mode = mode
            n = len(got[okv[0]].data.splitlines())
            verdict = OK if mode in ("epsv", "pasv") or not passive else WARN
            verdict = OK if passive else WARN
            self.add(Result("listing", title, verdict,
                            f"{' and '.join(okv)} over {mode.upper()}: {n} entries", ev,
                            cause=("" if passive else
                                   "Listings only work in active mode; passive mode is broken."),
                            facts=facts))
            return
        err = "; ".join(f"{v}: {tr.error}" for v, tr in got.items())
        reuse = self.tls and any("reuse" in tr.error.lower() for tr in got.values())
        self.add(Result("listing", title, FAIL, err, ev,
                        cause=f"The listing failed over {mode.upper()}: {err}.",
                        fix=[self.fix("tls_reuse")] if reuse else [], facts=facts))

    # 9. write --------------------------------------------------------------------

    async def check_write(self) -> None:
        title = "Upload, read back, delete"
        if not self.write:
            self.skip("write", title, "not asked (use --write)")
            return
        if not self.logged_in:
            self.skip("write", title, "not logged in")
            return
        modes = self._modes()
        if not modes:
            self.skip("write", title, "no data connection mode works")
            return
        mode = modes[0]
        name = f"natftp-doctor-{uuid.uuid4().hex[:12]}.txt"
        payload = f"natftp doctor write test {name}\n".encode() * 8
        ev: list[str] = []
        try:
            c = await self.session()
        except SessionError as e:
            self.add(Result("write", title, FAIL, f"no session: {e}"))
            return
        try:
            tr = await self._transfer(c, "STOR", name, mode=mode, upload=payload)
            ev.extend(tr.evidence)
            if not tr.ok:
                (c.abort() if tr.broken else await c.close())
                code = tr.final.code if tr.final else 0
                denied = code in (550, 553, 532, 450, 452) or "permission" in tr.error.lower()
                self.add(Result("write", title, FAIL, f"upload refused: {tr.error}", ev,
                                cause=(f"The server refused the upload of {name}: "
                                       f"{tr.error.rstrip('.')}."
                                       + (" Writes are disabled for this user." if denied
                                          else "")),
                                fix=[self.fix("write_denied")] if denied else []))
                return
            tr2 = await self._transfer(c, "RETR", name, mode=mode)
            ev.extend(tr2.evidence)
            same = tr2.ok and tr2.data == payload
            r = await c.cmd("DELE", name)
            ev.append(f"DELE {name} -> {_q(r)}")
            deleted = r.code == 250
        except (FtpClosed, FtpTimeout) as e:
            c.abort()
            self.add(Result("write", title, FAIL, str(e), ev,
                            cause=f"The control connection broke during the write test: {e}."))
            return
        await c.close()
        if not same:
            self.add(Result("write", title, FAIL, "read-back differs", ev,
                            cause=f"{name} came back different ({len(tr2.data)} of "
                                  f"{len(payload)} bytes): {tr2.error or 'content differs'}."))
        elif not deleted:
            self.add(Result("write", title, WARN, f"uploaded, read back, not deleted: {_q(r)}",
                            ev, cause=f"The test file {name} could not be deleted: {_q(r)}.",
                            fix=[self.fix("write_denied")]))
        else:
            self.add(Result("write", title, OK,
                            f"{len(payload)} bytes uploaded, read back identical, deleted", ev))

    # 10. plain vs TLS PASV ---------------------------------------------------------

    async def check_pasv_plain_vs_tls(self) -> None:
        title = "PASV plain vs TLS (router helper)"
        if not self.explicit_tls:
            return
        if not self.logged_in or ":" in self.control_ip:
            self.skip("pasv-tls", title, "not logged in" if not self.logged_in else "IPv6")
            return
        ev: list[str] = []
        try:
            cp = await self.session(tls=False)
        except SessionError as e:
            self.skip("pasv-tls", title, f"plain session refused ({e})")
            return
        try:
            rp, gp, _ = await self._pasv(cp)
            ev.append(f"plain: PASV -> {_q(rp)}")
        finally:
            await cp.close()
        try:
            ct = await self.session(tls=True)
            rt, gt, _ = await self._pasv(ct)
            ev.append(f"TLS:   PASV -> {_q(rt)}")
            await ct.close()
        except (SessionError, FtpClosed, FtpTimeout) as e:
            self.skip("pasv-tls", title, f"TLS session failed ({e})")
            return
        if gp is None or gt is None:
            self.skip("pasv-tls", title, "PASV not answered on both")
            return
        if gp[0] == gt[0]:
            self.add(Result("pasv-tls", title, OK, f"both advertise {gp[0]}", ev,
                            facts={"plain": gp[0], "tls": gt[0]}))
            return
        self.add(Result(
            "pasv-tls", title, WARN,
            f"plain advertises {gp[0]}, TLS advertises {gt[0]}", ev,
            cause=(f"A router on the path rewrites PASV replies on the plain control channel "
                   f"({gt[0]} -> {gp[0]}) but cannot under TLS: its FTP helper is blind to "
                   "encrypted control channels, so FTPS clients see the server's own "
                   f"address {gt[0]}."),
            fix=[K.router("helper_blind", public=self.public), self.fix("pasv_private")],
            facts={"plain": gp[0], "tls": gt[0]}))

    # 11. passive port sample -------------------------------------------------------

    async def check_pasv_sample(self) -> None:
        title = "Passive port range sample"
        if not self.logged_in or ":" in self.control_ip:
            self.skip("pasv-range", title, "not logged in" if not self.logged_in else "IPv6")
            return
        try:
            c = await self.session()
        except SessionError as e:
            self.skip("pasv-range", title, f"no session ({e})")
            return
        ev: list[str] = []
        outcomes: list[ConnectOutcome] = []
        ports: list[int] = []
        host = self.control_ip
        try:
            for _ in range(self.samples):
                r, got, err = await self._pasv(c)
                if got is None:
                    ev.append(f"PASV -> {_q(r)}")
                    break
                ports.append(got[1])
                if sum(o.status == "timeout" for o in outcomes) >= 2:
                    continue  # enough evidence; keep sampling ports only
                o = await tcp_probe(host, got[1], min(self.timeout, 2.0))
                outcomes.append(o)
        except (FtpClosed, FtpTimeout) as e:
            c.abort()
            ev.append(str(e))
        else:
            await c.close()
        ports_all = sorted(set(ports + self.range_ports))
        if not ports:
            self.skip("pasv-range", title, "PASV not answered")
            return
        low, high = min(ports_all), max(ports_all)
        ev.append(f"ports seen: {', '.join(map(str, ports_all))} "
                  f"(the range spans at least {low}-{high})")
        ev += [f"connect {o}" for o in outcomes]
        bad = [o for o in outcomes if not o.ok]
        facts = {"ports": ports_all, "low": low, "high": high,
                 "status": [o.status for o in outcomes]}
        if not bad:
            self.add(Result("pasv-range", title, OK,
                            f"{len(outcomes)} of {len(outcomes)} sampled ports accept "
                            f"({low}-{high})", ev, facts=facts))
            return
        statuses = sorted({o.status for o in bad})
        timeouts = any(o.status == "timeout" for o in bad)
        cause = (f"{len(bad)} of {len(outcomes)} sampled passive ports (seen: {low}-{high}) "
                 f"do not accept at {host} ({'/'.join(statuses)}): "
                 + ("the router does not forward the passive range (or a firewall drops "
                    "it)." if timeouts else "a firewall rejects the passive range."))
        self.add(Result("pasv-range", title, FAIL, f"{len(bad)} sampled ports {statuses}", ev,
                        cause=cause,
                        fix=[K.router("forward_range", low=str(low), high=str(high),
                                      server_ip=self.server_lan_ip),
                             self.fix("passive_range", low=str(low), high=str(high))],
                        facts=facts))

    # -- data transfers --------------------------------------------------------------

    async def _transfer(self, c: Control, verb: str, arg: str, mode: str,
                        upload: bytes | None = None) -> Transfer:
        """One data transfer over a mode: epsv, pasv, pasv-control, eprt, port."""
        tr = Transfer(ok=False)
        ev = tr.evidence
        try:
            if mode in ("eprt", "port"):
                return await self._active(c, verb, arg, mode, tr, upload)
            if mode == "epsv":
                r = await c.cmd("EPSV")
                ev.append(f"EPSV -> {_q(r)}")
                if r.code != 229:
                    tr.error = f"EPSV refused: {_q(r)}"
                    return tr
                host, port = self.control_ip, parse_229(r.text)
            else:
                r, got, err = await self._pasv(c)
                ev.append(f"PASV -> {_q(r)}")
                if got is None:
                    tr.error = err
                    return tr
                host = got[0] if mode == "pasv" else self.control_ip
                port = got[1]
            try:
                dr, dw = await open_data(host, port, self.timeout,
                                         tls=c.data_tls_context(self.tls_reuse))
            except (TimeoutError, OSError, ssl.SSLError) as e:
                st, detail = classify_oserror(e)
                tr.error = f"data connection to {host}:{port}: {st} ({detail})"
                ev.append(tr.error)
                tr.broken = True
                return tr
            ev.append(f"data connection to {host}:{port} open")
            return await self._run_data(c, verb, arg, dr, dw, tr, upload)
        except (FtpClosed, FtpTimeout, AddressError) as e:
            tr.error = str(e)
            tr.broken = True
            ev.append(tr.error)
            return tr

    async def _run_data(self, c: Control, verb: str, arg: str, dr: asyncio.StreamReader,
                        dw: asyncio.StreamWriter, tr: Transfer, upload: bytes | None,
                        ) -> Transfer:
        ev = tr.evidence
        await c.send(verb, arg)
        try:
            r = await c.reply()
        except (FtpClosed, FtpTimeout):
            await close_writer(dw)
            raise
        ev.append(f"{verb} {arg} -> {_q(r)}".replace("  ", " "))
        if r.kind != 1:
            await close_writer(dw)
            tr.final = r
            tr.error = f"{verb} refused: {_q(r)}"
            return tr
        try:
            if upload is not None:
                dw.write(upload)
                await asyncio.wait_for(dw.drain(), self.timeout)
                if dw.can_write_eof():
                    dw.write_eof()
                await close_writer(dw)
            else:
                tr.data = await read_all(dr, self.timeout * 2)
                await close_writer(dw)
        except (TimeoutError, OSError, ssl.SSLError, FtpTimeout) as e:
            await close_writer(dw)
            tr.error = f"data transfer failed: {e}"
            ev.append(tr.error)
        final = await c.reply(self.timeout * 2)
        tr.final = final
        ev.append(f"-> {_q(final)} ({len(tr.data) if upload is None else len(upload)} bytes)")
        if final.kind == 2 and not tr.error:
            tr.ok = True
        elif not tr.error:
            tr.error = f"{verb} failed: {_q(final)}"
        return tr

    async def _active(self, c: Control, verb: str, arg: str, mode: str, tr: Transfer,
                      upload: bytes | None) -> Transfer:
        ev = tr.evidence
        local_ip = c.local[0]
        loop = asyncio.get_running_loop()
        lsock = socket.socket(socket.AF_INET6 if ":" in local_ip else socket.AF_INET)
        get_conn: asyncio.Future[tuple[socket.socket, Any]] | None = None
        get_reply: asyncio.Future[Reply] | None = None
        try:
            lsock.bind((local_ip, 0))
            lsock.listen(1)
            lsock.setblocking(False)
            lport = int(lsock.getsockname()[1])
            arg_ = (format_eprt_arg(local_ip, lport) if mode == "eprt"
                    else format_port_arg(local_ip, lport))
            get_conn = asyncio.ensure_future(loop.sock_accept(lsock))
            try:
                r = await c.cmd(mode.upper(), arg_)
            except FtpTimeout:
                tr.broken = True
                tr.error = (f"no reply to {mode.upper()} within {self.timeout:g} s and no "
                            f"connection to {local_ip}:{lport} (this server connects back "
                            "as soon as it gets the command)")
                ev.append(f"{mode.upper()} {arg_} -> (no reply)")
                ev.append(tr.error)
                return tr
            ev.append(f"{mode.upper()} {arg_} -> {_q(r)}")
            if r.code != 200:
                tr.error = f"refused: {_q(r)}"
                return tr
            await c.send(verb, arg)
            get_reply = asyncio.ensure_future(c.reply())
            done, _ = await asyncio.wait({get_conn, get_reply}, timeout=self.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            pre: Reply | None = None
            if get_reply in done:
                pre = get_reply.result()
                ev.append(f"{verb} -> {_q(pre)}")
                if pre.kind != 1:
                    tr.final = pre
                    tr.error = f"the server could not connect back: {_q(pre)}"
                    return tr
                if get_conn not in done:
                    await asyncio.wait({get_conn}, timeout=self.timeout)
            if not get_conn.done():
                tr.broken = True
                tr.error = (f"no connection from the server to {local_ip}:{lport} "
                            f"within {self.timeout:g} s")
                ev.append(tr.error)
                return tr
            conn, peer = get_conn.result()
            tr.source = (str(peer[0]), int(peer[1]))
            ev.append(f"the server connected from {tr.source[0]}:{tr.source[1]}")
            if pre is None:
                pre = await get_reply
                ev.append(f"{verb} -> {_q(pre)}")
            if pre.kind != 1:
                conn.close()
                tr.final = pre
                tr.error = f"{verb} refused: {_q(pre)}"
                return tr
            dr, dw = await wrap_accepted(conn, self.timeout, c.data_tls_context(self.tls_reuse))
            return await self._finish_active(c, verb, dr, dw, tr, upload)
        except (TimeoutError, FtpClosed, FtpTimeout, OSError, ssl.SSLError) as e:
            tr.error = str(e) or type(e).__name__
            tr.broken = True
            ev.append(tr.error)
            return tr
        finally:
            for fut in (get_conn, get_reply):
                if fut is not None and not fut.done():
                    fut.cancel()
            lsock.close()

    async def _finish_active(self, c: Control, verb: str, dr: asyncio.StreamReader,
                             dw: asyncio.StreamWriter, tr: Transfer,
                             upload: bytes | None) -> Transfer:
        try:
            if upload is not None:
                dw.write(upload)
                await asyncio.wait_for(dw.drain(), self.timeout)
            else:
                tr.data = await read_all(dr, self.timeout * 2)
        finally:
            await close_writer(dw)
        final = await c.reply(self.timeout * 2)
        tr.final = final
        tr.evidence.append(f"-> {_q(final)} ({len(tr.data)} bytes)")
        tr.ok = final.kind == 2
        if not tr.ok:
            tr.error = f"{verb} failed: {_q(final)}"
        return tr


def _name_matches(host: str, names: list[str]) -> bool:
    h = host.lower().rstrip(".")
    try:
        ha = ipaddress.ip_address(h)
        return any(_same_ip(ha, n) for n in names)
    except ValueError:
        pass
    for n in names:
        n = n.lower().rstrip(".")
        if n == h:
            return True
        if n.startswith("*.") and "." in h and h.split(".", 1)[1] == n[2:]:
            return True
    return False


def _same_ip(a: ipaddress.IPv4Address | ipaddress.IPv6Address, n: str) -> bool:
    try:
        return ipaddress.ip_address(n) == a
    except ValueError:
        return False


async def diagnose(url: str, tls: bool = False, implicit_tls: bool = False,
                   write: bool = False, timeout: float = 3.0) -> Report:
    target = Target.parse(url, implicit_tls=implicit_tls)
    return await Doctor(target, tls=tls or target.explicit_tls, write=write,
                        timeout=timeout).run()
