"""The rules between the codecs, each table-tested once: which active targets a server or
gateway connects to, which passive target a client-side part uses, which PROT an AUTH
mechanism implies. Server, gateway, client and doctor all call these."""

from __future__ import annotations

import pytest

from natftp.proto import addr
from natftp.proto.addr import ActiveTargetRefused, ip
from natftp.proto.security import auth_mechanism

# (PORT/EPRT host, port, control peer, allow_foreign, allow_low) -> target or (code, kind)
ACTIVE = [
    ("127.0.0.1", 40000, "127.0.0.1", False, False, "127.0.0.1"),
    ("::1", 40000, "::1", False, False, "::1"),
    # lftp: EPRT |2|::|port| / PORT 0,0,0,0 mean "connect back to me"
    ("::", 40000, "::1", False, False, "::1"),
    ("0.0.0.0", 40000, "192.0.2.7", False, False, "192.0.2.7"),
    # a mapped peer (dual-stack listener) is its IPv4 self
    ("192.0.2.7", 40000, "::ffff:192.0.2.7", False, False, "192.0.2.7"),
    ("::ffff:192.0.2.7", 40000, "192.0.2.7", False, False, "192.0.2.7"),
    # a third host: FTP bounce
    ("127.0.0.2", 40000, "127.0.0.1", False, False, (501, "foreign")),
    ("127.0.0.2", 40000, "127.0.0.1", True, False, "127.0.0.2"),
    # the unspecified address of the other family is not "me"
    ("::", 40000, "127.0.0.1", False, False, (522, "family")),
    ("::1", 40000, "127.0.0.1", True, True, (522, "family")),
    ("127.0.0.1", 40000, "::1", False, False, (522, "family")),
    ("127.0.0.1", 21, "127.0.0.1", False, False, (501, "low-port")),
    ("127.0.0.1", 1023, "127.0.0.1", False, True, "127.0.0.1"),
    ("127.0.0.1", 1024, "127.0.0.1", False, False, "127.0.0.1"),
]


@pytest.mark.parametrize(("host", "port", "peer", "foreign", "low", "want"), ACTIVE)
def test_active_target(host: str, port: int, peer: str, foreign: bool, low: bool,
                       want: str | tuple[int, str]) -> None:
    if isinstance(want, str):
        assert addr.active_target(host, port, peer, allow_foreign=foreign,
                                  allow_low_ports=low) == ip(want)
        return
    with pytest.raises(ActiveTargetRefused) as e:
        addr.active_target(host, port, peer, allow_foreign=foreign, allow_low_ports=low)
    assert (e.value.code, e.value.kind) == want


def test_active_refusal_texts_say_what_and_why() -> None:
    with pytest.raises(ActiveTargetRefused) as e:
        addr.active_target("127.0.0.2", 40000, "127.0.0.1")
    text = e.value.reply_text("EPRT", "active.allow_foreign_address = false")
    assert text == ("EPRT refused: address 127.0.0.2 is not your address 127.0.0.1 (FTP "
                    "bounce protection; active.allow_foreign_address = false).")
    with pytest.raises(ActiveTargetRefused) as e:
        addr.active_target("::1", 40000, "127.0.0.1")
    assert "use (1)" in e.value.reply_text("EPRT")


# (reply code, text, control peer, trust) -> (host, port, ignored) or "error"
PASSIVE = [
    (229, "Entering Extended Passive Mode (|||40000|)", "192.0.2.7", False,
     ("192.0.2.7", 40000, None)),
    (227, "Entering Passive Mode (192,0,2,7,156,64).", "192.0.2.7", False,
     ("192.0.2.7", 40000, None)),
    # S1: 0.0.0.0 would be our own machine
    (227, "Entering Passive Mode (0,0,0,0,156,64).", "192.0.2.7", False,
     ("192.0.2.7", 40000, "0.0.0.0")),
    # S2: the server's private address behind its NAT
    (227, "Entering Passive Mode (10,0,11,251,156,64).", "203.0.113.5", False,
     ("203.0.113.5", 40000, "10.0.11.251")),
    # CVE-2020-8284: a third host
    (227, "Entering Passive Mode (198,51,100,1,156,64).", "203.0.113.5", False,
     ("203.0.113.5", 40000, "198.51.100.1")),
    (227, "Entering Passive Mode (198,51,100,1,156,64).", "203.0.113.5", True,
     ("198.51.100.1", 40000, None)),
    # a mapped control peer is compared as IPv4
    (227, "Entering Passive Mode (127,0,0,1,156,64).", "::ffff:127.0.0.1", False,
     ("127.0.0.1", 40000, None)),
    (227, "Entering Passive Mode (127,0,0,1,0,0).", "127.0.0.1", False, "error"),
    (227, "Entering Passive Mode (1,2,3,4).", "127.0.0.1", False, "error"),
    (229, "Entering Extended Passive Mode (|||99999|)", "127.0.0.1", False, "error"),
    (200, "PASV ok", "127.0.0.1", False, "error"),
]


@pytest.mark.parametrize(("code", "text", "peer", "trust", "want"), PASSIVE)
def test_passive_target(code: int, text: str, peer: str, trust: bool,
                        want: str | tuple[str, int, str | None]) -> None:
    if want == "error":
        with pytest.raises(addr.AddressError):
            addr.passive_target(code, text, peer, trust=trust)
        return
    assert isinstance(want, tuple)
    t = addr.passive_target(code, text, peer, trust=trust)
    assert (t.host, t.port) == (ip(want[0]), want[1])
    assert t.ignored == (ip(want[2]) if want[2] else None)
    assert (want[2] or "") in t.note() and bool(t.note()) == bool(want[2])


@pytest.mark.parametrize(("arg", "want"), [
    ("TLS", ("TLS", False)), ("tls", ("TLS", False)), (" TLS-C ", ("TLS-C", False)),
    ("SSL", ("SSL", True)), ("TLS-P", ("TLS-P", True)), ("KERBEROS_V4", None), ("", None),
])
def test_auth_mechanism_and_the_prot_it_implies(arg: str, want: tuple[str, bool] | None,
                                                ) -> None:
    m = auth_mechanism(arg)
    assert (None if m is None else (m.name, m.prot_p)) == want
