"""The doctor's verdicts from made-up observations: no server, no network. Each case is
a field report (scenarios S1-S9) reduced to what the probes would have seen."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from natftp.doctor import verdicts as V
from natftp.doctor.certs import CertFacts, name_matches, read_cert
from natftp.doctor.probes import (
    Epsv,
    Greeting,
    Handshake,
    Login,
    PasvPair,
    Sample,
    SessionError,
    Target,
    Transfer,
    Write,
)
from natftp.ftpio.data import Probe
from natftp.proto.feat import Features
from natftp.proto.replies import Reply
from natftp.proto.url import URLError

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def facts(server: str = "vsftpd", control: str = "203.0.113.5",
          local: str = "198.51.100.7") -> V.Facts:
    return V.Facts("ftp.example.net", 21, "alice", server, control, local)


def pasv227(a: str, port: int = 40000) -> Reply:
    return Reply.of(227, f"Entering Passive Mode ({a.replace('.', ',')},"
                         f"{port >> 8},{port & 255}).")


def pair(adv: str, adv_status: str | None, ctl_status: str, port: int = 40000) -> PasvPair:
    return PasvPair(first=pasv227(adv, port), advertised=(adv, port),
                    advertised_probe=None if adv_status is None else
                    Probe(adv_status, adv, port),
                    second=pasv227(adv, port + 1), second_port=port + 1,
                    control_probe=Probe(ctl_status, "203.0.113.5", port + 1))


def test_s1_vsftpd_advertising_zero_names_listen_ipv6() -> None:
    r = V.pasv(pair("0.0.0.0", None, "ok"), facts())
    assert r.verdict == "fail" and "unspecified" in r.cause
    assert "clients that ignore the PASV address" in r.cause  # the control address works
    assert "listen_ipv6=NO" in r.fix[0] and "pasv_address=203.0.113.5" in r.fix[0]
    assert r.facts["advertised_connect"] == "not tried"


def test_s2_private_address_behind_one_to_one_nat() -> None:
    r = V.pasv(pair("10.0.11.251", "timeout", "ok"), facts("proftpd"))
    assert r.verdict == "fail"
    assert "private address 10.0.11.251" in r.cause and "public 203.0.113.5" in r.cause
    assert "MasqueradeAddress 203.0.113.5" in r.fix[0]
    assert any("helper" in x for x in r.fix)  # the control address works: a router fix too


def test_wrong_masquerade_address_that_refuses() -> None:
    r = V.pasv(pair("192.0.2.50", "refused", "ok"), facts("pyftpdlib"))
    assert r.verdict == "fail" and "set wrong" in r.cause
    assert "masquerade_address" in r.fix[0]


def test_healthy_and_blocked_passive_ports() -> None:
    ok = V.pasv(pair("203.0.113.5", "ok", "ok"), facts())
    assert ok.verdict == "ok" and not ok.cause
    blocked = V.pasv(pair("203.0.113.5", "timeout", "timeout"), facts())
    assert blocked.verdict == "fail" and "does not forward the passive port range" in \
        blocked.cause
    assert V.pasv(PasvPair(broken="no session: x"), facts()).summary == "no session: x"
    refused = V.pasv(PasvPair(first=Reply.of(502, "no"), error="PASV refused: 502 no"),
                     facts())
    assert refused.verdict == "fail" and "Use EPSV" in refused.fix[0]


@pytest.mark.parametrize(("status", "words"), [
    ("refused", "Nothing accepts connections"), ("timeout", "get no answer"),
    ("unreachable", "no route"), ("error", "Cannot connect"),
])
def test_connect_failures_say_why(status: str, words: str) -> None:
    r = V.connect("ftp.example.net", 21, [Probe(status, "203.0.113.5", 21, "d")])
    assert r.verdict == "fail" and words in r.cause and r.facts["status"] == status


PLAIN = Target.parse("ftp://alice@ftp.example.net/")


def test_banner_slow_missing_or_refusing() -> None:
    slow = V.banner(Greeting(Reply.of(220, "hi"), ["220 hi"], delay=4.2), facts(), PLAIN, [])
    assert slow.verdict == "warn" and "4.2 s" in slow.cause and "reverse_lookup_enable" in \
        slow.fix[0]
    none = V.banner(Greeting(error="no reply from the server within 3 s"), facts(), PLAIN, [])
    assert none.verdict == "fail" and "ftps://ftp.example.net:21/" in none.cause
    assert "--timeout" in none.fix[0]
    busy = V.banner(Greeting(Reply.of(421, "Too many users"), ["421 Too many users"]),
                    facts(), PLAIN, [])
    assert busy.verdict == "fail" and "refuses sessions" in busy.cause


def test_certificate_verdicts(tmp_path: Path) -> None:
    from natftp.tls import self_signed

    cert, _ = self_signed(tmp_path, ("ftp.example.net", "203.0.113.5"))
    der = __import__("ssl").PEM_cert_to_DER_cert(cert.read_text())
    c = read_cert(der)
    assert c.self_signed and "ftp.example.net" in c.names
    verdict, notes, cause, f = V.certificate(c, "ftp.example.net", dt.datetime.now(dt.UTC))
    assert verdict == "warn" and "self-signed" in cause and "not for" not in cause
    assert f["self_signed"] is True
    verdict, _, cause, _ = V.certificate(c, "other.example.org", dt.datetime.now(dt.UTC))
    assert "not for other.example.org" in cause
    expired = CertFacts(("ftp.example.net",), NOW - dt.timedelta(days=400),
                        NOW - dt.timedelta(days=1), False)
    verdict, _, cause, _ = V.certificate(expired, "ftp.example.net", NOW)
    assert verdict == "fail" and "expired" in cause
    assert V.certificate(None, "h", NOW)[0] == "warn"
    assert name_matches("a.example.net", ["*.example.net"])
    assert not name_matches("a.b.example.net", ["*.example.net"])
    assert name_matches("203.0.113.5", ["203.0.113.5"])


def test_tls_not_offered_names_the_servers_setting() -> None:
    h = Handshake(["220 hi", "AUTH TLS -> 500 no"], refused=Reply.of(500, "no"))
    r = V.tls(h, facts("vsftpd"), PLAIN, None, NOW)
    assert r.verdict == "fail" and "ssl_enable=YES" in r.fix[0]
    assert "Nothing was logged in" in r.cause


def test_login_failures() -> None:
    demand = SessionError("login refused", Reply.of(530, "Must use TLS first"))
    r = V.login(Login(error=demand), facts(), False, [])
    assert "without TLS" in r.cause and "ftpes://alice@ftp.example.net:21/" in r.fix[0]
    wrong = SessionError("login refused", Reply.of(530, "Login incorrect."))
    r = V.login(Login(error=wrong), facts(), False, [])
    assert "refused the login of alice" in r.cause
    ok = V.login(Login(transcript=["-> USER alice"]), facts(), False, ["server identified"])
    assert ok.verdict == "ok" and ok.evidence[-1] == "server identified"


def test_feat_missing_features() -> None:
    r = V.feat(Features(["EPSV", "MLST type*;size*;", "UTF8"]))
    assert r.verdict == "ok" and "not advertised" not in r.summary  # MLST implies MLSD
    r = V.feat(Features(["MDTM"]))
    assert "EPSV, MLSD, UTF8" in r.summary
    assert V.feat(Features()).verdict == "warn"


def test_epsv_verdicts() -> None:
    ok = Epsv(Reply.of(229, "(|||40000|)"), 40000, Probe("ok", "203.0.113.5", 40000))
    assert V.epsv(ok, facts()).verdict == "ok"
    closed = Epsv(Reply.of(229, "(|||40000|)"), 40000, Probe("timeout", "203.0.113.5", 40000))
    assert "not forwarded or is firewalled" in V.epsv(closed, facts()).cause
    assert V.epsv(Epsv(Reply.of(500, "?")), facts()).verdict == "warn"


def test_s3_active_mode_behind_our_nat() -> None:
    tr = Transfer(False, error="no connection from the server to 192.168.10.2:40000")
    r = V.active("PORT", tr, facts(local="192.168.10.2"))
    assert r.verdict == "warn" and "we are behind NAT" in r.cause and "S3" in r.cause
    r = V.active("EPRT", tr, facts(local="198.51.100.7"))
    assert "firewall on this host" in r.cause
    refused = V.active("PORT", Transfer(False, error="refused: 500 no"), facts())
    assert refused.cause == "The server refuses PORT: 500 no."
    ok = V.active("PORT", Transfer(True, source=("203.0.113.5", 20)), facts())
    assert ok.verdict == "ok" and ok.facts["source"] == "203.0.113.5:20"


def test_listing_that_needs_session_reuse_names_the_fix() -> None:
    bad = Transfer(False, error="TLS on the data connection failed: session reuse required")
    r = V.listing({"MLSD": bad, "LIST": bad}, [], "epsv", True, True, False,
                  facts("vsftpd"))
    assert r.verdict == "fail" and r.fix and "require_ssl_reuse" in r.fix[0]
    good = Transfer(True, data=b"a\r\nb\r\n")
    r = V.listing({"MLSD": good}, [], "eprt", False, False, False, facts())
    assert r.verdict == "warn" and "only work in active mode" in r.cause


def test_write_verdicts() -> None:
    denied = Write("t.txt", b"x", upload=Transfer(False, error="STOR refused: 550 Permission "
                                                  "denied.", final=Reply.of(550, "no")))
    r = V.write(denied, facts("vsftpd"))
    assert r.verdict == "fail" and "write_enable=YES" in r.fix[0]
    differs = Write("t.txt", b"xx", upload=Transfer(True), readback=Transfer(True, b"x"))
    assert "came back different (1 of 2 bytes)" in V.write(differs, facts()).cause
    kept = Write("t.txt", b"x", upload=Transfer(True), readback=Transfer(True, b"x"),
                 delete=Reply.of(550, "no"))
    assert V.write(kept, facts()).verdict == "warn"
    done = Write("t.txt", b"x", upload=Transfer(True), readback=Transfer(True, b"x"),
                 delete=Reply.of(250, "ok"))
    assert V.write(done, facts()).verdict == "ok"


def test_s7_router_helper_blind_to_tls() -> None:
    plain = (pasv227("203.0.113.5"), ("203.0.113.5", 40000))
    protected = (pasv227("172.16.0.2"), ("172.16.0.2", 40001))
    r = V.pasv_plain_vs_tls(plain, protected, facts())
    assert r.verdict == "warn" and "blind to encrypted control channels" in r.cause
    assert V.pasv_plain_vs_tls(plain, plain, facts()).verdict == "ok"


def test_s4_passive_range_not_forwarded() -> None:
    s = Sample([40000, 40003], [Probe("ok", "h", 40000), Probe("timeout", "h", 40003)])
    r = V.pasv_range(s, [39990], facts(control="203.0.113.5"))
    assert r.verdict == "fail" and "39990-40003" in r.cause and "does not forward" in r.cause
    assert "pasv_min_port=39990" in r.fix[1]


def test_target_parsing_uses_the_one_url_parser() -> None:
    t = Target.parse("ftpes://bob:pw@h:2121/")
    assert t.explicit_tls and not t.implicit_tls and t.port == 2121
    assert t.display() == "ftpes://bob@h:2121/"
    t = Target.parse("ftps://h/")
    assert t.implicit_tls and t.port == 990
    t = Target.parse("h", implicit_tls=True)
    assert t.implicit_tls and t.port == 990 and t.user == "anonymous"
    with pytest.raises(URLError, match="closing"):
        Target.parse("ftp://u:secret@[::1:21/")
