"""The doctor's run: which probe comes when, and what each verdict needs to know.

A check is a probe (:mod:`natftp.doctor.probes`, network I/O that returns an observation)
followed by a verdict (:mod:`natftp.doctor.verdicts`, a pure function from the
observation to a :class:`Result`). This module only orders them and carries what one
check learns to the next (the address we reached, which server it is, which data modes
work), in :class:`natftp.doctor.verdicts.Facts` and a few flags.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable

from natftp.doctor import knowledge as K
from natftp.doctor import verdicts as V
from natftp.doctor.certs import read_cert
from natftp.doctor.probes import PasvPair, Prober, SessionError, Target, Transfer
from natftp.doctor.result import FAIL, OK, Report, Result
from natftp.proto.addr import AddrClass, classify, ip
from natftp.proto.feat import Features
from natftp.proto.url import URLError

TargetError = URLError  # the URL does not parse (natftp.proto.url says why, masked)

__all__ = ["Doctor", "Target", "TargetError", "diagnose"]


class Doctor:
    def __init__(self, target: Target, write: bool = False, timeout: float = 3.0,
                 samples: int = 5, compare_plain: bool = False) -> None:
        self.t = target
        #: TLS is the URL's instruction (ftpes://, ftps://, or --tls/--implicit-tls):
        #: when it fails, nothing logs in (USER/PASS would cross the network in the clear)
        self.tls = target.tls
        self.explicit_tls = target.explicit_tls
        self.tls_failed = ""
        #: the S7 comparison logs in over plain FTP too: only when asked (--compare-plain)
        self.compare_plain = compare_plain
        self.greeted = False
        self.write = write
        self.timeout = timeout
        self.samples = samples
        self.probe = Prober(target, timeout, allow_plain_login=compare_plain)
        self.facts = V.Facts(target.host, target.port, target.user)
        self.results: list[Result] = []
        self.texts: dict[str, str] = {}
        self.addrs: list[str] = []
        self.logged_in = False
        self.pasv_addr_usable = False
        self.pasv_control_usable = False
        self.epsv_usable = False
        self.tls_reuse = False
        self.reuse_required = False
        self.range_ports: list[int] = []
        self.features = Features()

    def add(self, r: Result) -> Result:
        self.results.append(r)
        return r

    @property
    def control_ip(self) -> str:
        return self.facts.control_ip

    # -- the run ------------------------------------------------------------------

    async def run(self) -> Report:
        steps: list[Callable[[], Awaitable[None]]] = [
            self.check_resolve, self.check_connect, self.check_tls, self.check_login,
            self.check_feat, self.check_pasv, self.check_epsv, self.check_active_eprt,
            self.check_active_port, self.check_listing, self.check_write,
            self.check_pasv_plain_vs_tls, self.check_pasv_sample]
        for step in steps:
            try:
                await step()
            except Exception as e:  # a doctor must not crash on a weird server
                name = step.__name__.removeprefix("check_")
                self.add(Result(name, name, FAIL, f"internal error: {type(e).__name__}: {e}",
                                cause=f"The doctor hit an unexpected error in {name}: {e}"))
        return Report(self.t.display(), self.facts.server, K.DISPLAY[self.facts.server],
                      self.results)

    async def check_resolve(self) -> None:
        obs = await self.probe.resolve()
        self.addrs = obs.addresses
        self.add(V.resolve(self.t.host, obs))

    async def check_connect(self) -> None:
        if not self.addrs:
            self.add(V.skip("connect", "TCP connect", "the name did not resolve"))
            self.add(V.skip("banner", "Banner / server", "no connection"))
            return
        probes = await self.probe.connect(self.addrs)
        self.add(V.connect(self.t.host, self.t.port, probes))
        last = probes[-1]
        if not last.ok:
            self.add(V.skip("banner", "Banner / server", "no connection"))
            return
        self.facts.control_ip = str(ip(last.host))
        self.facts.local_ip = last.local[0] if last.local else ""
        self.probe.host = self.facts.control_ip
        g = await self.probe.greeting()
        reasons: list[str] = []
        if g.reply is not None:
            self.texts["banner"] = g.reply.text
            self.facts.server, reasons = K.identify(self.texts)
            self.greeted = g.reply.code == 220
        self.add(V.banner(g, self.facts, self.t, reasons))

    async def check_tls(self) -> None:
        if not self.tls:
            return
        if not self.control_ip:
            self.add(V.skip("tls", "TLS", "no connection"))
            return
        if not self.greeted and not self.t.implicit_tls:
            # no greeting, so no AUTH TLS to send: the banner check said why, and a
            # second wait for the same silence would double the time --timeout allows
            self.add(V.skip("tls", "TLS (AUTH TLS)", "not tried: no FTP greeting"))
            self.tls_failed = "no greeting"
            return
        h = await self.probe.handshake()
        cert = read_cert(h.der) if h.der else None
        r = self.add(V.tls(h, self.facts, self.t, cert, dt.datetime.now(dt.UTC)))
        if h.refused is not None or h.error:
            self.tls_failed = r.summary

    async def check_login(self) -> None:
        if not self.control_ip:
            self.add(V.skip("login", "Login", "no connection"))
            return
        if self.tls_failed:
            self.add(V.skip("login", "Login", f"not tried: {self.t.scheme}:// asks for TLS "
                            "and TLS failed; a login without it would send the password "
                            "in the clear"))
            return
        if not self.greeted:
            self.add(V.skip("login", "Login", "not tried: no FTP greeting"))
            return
        obs = await self.probe.login(self.tls)
        identified: list[str] = []
        if obs.error is None:
            self.logged_in = True
            self.texts.update(obs.texts)
            before = self.facts.server
            self.facts.server, reasons = K.identify(self.texts)
            if self.facts.server != before:
                identified.append(f"server identified as {K.DISPLAY[self.facts.server]}: "
                                  f"{'; '.join(reasons)}")
            self.features = obs.features
        self.add(V.login(obs, self.facts, self.tls, identified))

    async def check_feat(self) -> None:
        if not self.logged_in:
            self.add(V.skip("feat", "FEAT", "not logged in"))
            return
        self.add(V.feat(self.features))

    async def check_pasv(self) -> None:
        if not self.logged_in:
            self.add(V.skip("pasv", V.PASV_TITLE, "not logged in"))
            return
        if ":" in self.control_ip:
            self.add(V.skip("pasv", V.PASV_TITLE,
                            "IPv6 control connection: PASV carries IPv4 only"))
            return
        obs = await self.probe.pasv_pair(self.tls)
        self._learn_pasv(obs)
        self.add(V.pasv(obs, self.facts))

    def _learn_pasv(self, obs: PasvPair) -> None:
        if obs.advertised is None or obs.broken:
            return
        adv, port = obs.advertised
        self.facts.pasv_advertised = adv
        self.range_ports.append(port)
        if obs.second_port is not None:
            self.range_ports.append(obs.second_port)
        self.pasv_addr_usable = (obs.advertised_probe is not None and obs.advertised_probe.ok
                                 and classify(adv) is not AddrClass.UNSPECIFIED)
        self.pasv_control_usable = obs.control_probe is not None and obs.control_probe.ok

    async def check_epsv(self) -> None:
        if not self.logged_in:
            self.add(V.skip("epsv", "EPSV", "not logged in"))
            return
        obs = await self.probe.epsv(self.tls)
        if obs.port is not None and obs.probe is not None:
            self.range_ports.append(obs.port)
            self.epsv_usable = obs.probe.ok
        self.add(V.epsv(obs, self.facts))

    async def check_active_eprt(self) -> None:
        await self._check_active("EPRT")

    async def check_active_port(self) -> None:
        await self._check_active("PORT")

    async def _check_active(self, verb: str) -> None:
        cid, title = f"active-{verb.lower()}", f"Active mode ({verb})"
        if not self.logged_in:
            self.add(V.skip(cid, title, "not logged in"))
            return
        if verb == "PORT" and ":" in self.control_ip:
            self.add(V.skip(cid, title, "IPv6 control connection: PORT carries IPv4 only"))
            return
        tr = await self.probe.transfer_session(self.tls, "NLST" if verb == "PORT" else "LIST",
                                               "", verb.lower())
        if isinstance(tr, str):
            self.add(V.result(cid, title, FAIL, tr))
            return
        self.add(V.active(verb, tr, self.facts))

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
        if not self.logged_in:
            self.add(V.skip("listing", V.LISTING_TITLE, "not logged in"))
            return
        modes = self._modes()
        if not modes:
            self.add(V.no_data_mode())
            return
        ev: list[str] = []
        passive = [m for m in modes if m not in ("eprt", "port")]
        mode = passive[0] if passive else modes[0]
        got: dict[str, Transfer] = {}
        for verb in ("MLSD", "LIST"):
            tr = await self.probe.transfer_session(self.tls, verb, "", mode,
                                                   reuse=self.tls_reuse)
            if isinstance(tr, str):
                ev.append(tr)
                break
            ev.extend(tr.evidence)
            if not tr.ok and self.tls and not self.tls_reuse and verb == "LIST":
                # Does the server insist on TLS session reuse (vsftpd's default)?
                tr2 = await self.probe.transfer_session(self.tls, verb, "", mode, reuse=True)
                if isinstance(tr2, str):
                    ev.append(tr2)
                else:
                    ev.append("retry with the control connection's TLS session reused:")
                    ev.extend(tr2.evidence)
                    if tr2.ok:
                        tr = tr2
                        self.tls_reuse = self.reuse_required = True
            got[verb] = tr
        self.add(V.listing(got, ev, mode, bool(passive), self.tls, self.reuse_required,
                           self.facts))

    async def check_write(self) -> None:
        if not self.write:
            self.add(V.skip("write", V.WRITE_TITLE, "not asked (use --write)"))
            return
        if not self.logged_in:
            self.add(V.skip("write", V.WRITE_TITLE, "not logged in"))
            return
        modes = self._modes()
        if not modes:
            self.add(V.skip("write", V.WRITE_TITLE, "no data connection mode works"))
            return
        name = f"natftp-doctor-{uuid.uuid4().hex[:12]}.txt"
        payload = f"natftp doctor write test {name}\n".encode() * 8
        w = await self.probe.write(self.tls, modes[0], name, payload, self.tls_reuse)
        self.add(V.write(w, self.facts))

    async def check_pasv_plain_vs_tls(self) -> None:
        if not self.explicit_tls:
            return
        if not self.compare_plain:
            self.add(V.skip("pasv-tls", V.PASV_TLS_TITLE, "not asked: it logs in over "
                            "plain FTP too (the password in the clear); --compare-plain "
                            "runs it"))
            return
        if not self.logged_in or ":" in self.control_ip:
            self.add(V.skip("pasv-tls", V.PASV_TLS_TITLE,
                            "not logged in" if not self.logged_in else "IPv6"))
            return
        try:
            plain = await self.probe.pasv_once(tls=False)
        except SessionError as e:
            self.add(V.skip("pasv-tls", V.PASV_TLS_TITLE, f"plain session refused ({e})"))
            return
        try:
            protected = await self.probe.pasv_once(tls=True)
        except SessionError as e:
            self.add(V.skip("pasv-tls", V.PASV_TLS_TITLE, f"TLS session failed ({e})"))
            return
        self.add(V.pasv_plain_vs_tls(plain, protected, self.facts))

    async def check_pasv_sample(self) -> None:
        if not self.logged_in or ":" in self.control_ip:
            self.add(V.skip("pasv-range", V.RANGE_TITLE,
                            "not logged in" if not self.logged_in else "IPv6"))
            return
        obs = await self.probe.pasv_sample(self.tls, self.samples)
        if isinstance(obs, str):
            self.add(V.skip("pasv-range", V.RANGE_TITLE, obs))
            return
        self.add(V.pasv_range(obs, self.range_ports, self.facts))


async def diagnose(url: str, tls: bool = False, implicit_tls: bool = False,
                   write: bool = False, timeout: float = 3.0,
                   compare_plain: bool = False) -> Report:
    """Examine the server at ``url``; ``ftpes://`` means explicit TLS as ``tls`` does,
    ``ftps://`` implicit TLS as ``implicit_tls`` does."""
    target = Target.parse(url, implicit_tls=implicit_tls, explicit_tls=tls)
    return await Doctor(target, write=write, timeout=timeout,
                        compare_plain=compare_plain).run()
