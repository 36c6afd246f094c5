"""The doctor through a real NAT router (network namespaces, nftables, conntrack).

The doctor runs in the client namespace as a subprocess (`natftp doctor --json`), against
real servers in the server namespace, through the router namespace's DNAT.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from netlab import ROUTER_WAN, SERVER_IP, NatLab, nat_lab

from support.servers import Running, proftpd, pyftpd, vsftpd

RANGE = (30000, 30009)
RANGE_S = "30000-30009"


def doctor(lab: NatLab, s: Running, *extra: str) -> tuple[int, dict[str, Any]]:
    url = s.url.replace(SERVER_IP, ROUTER_WAN)
    p = subprocess.run([*lab.exec_args(lab.client), sys.executable, "-m", "natftp", "doctor",
                        url, "--json", "--timeout", "1.5", *extra],
                       capture_output=True, text=True, timeout=90)
    assert p.stdout, p.stderr
    return p.returncode, json.loads(p.stdout)


def check(d: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in d["checks"] if c["id"] == cid)


@contextmanager
def behind_nat(kind: str, *, lab_kw: dict[str, Any] | None = None,
               **server_kw: Any) -> Iterator[tuple[NatLab, Running]]:
    with nat_lab(**(lab_kw or {})) as lab:
        if kind == "vsftpd":
            cm = vsftpd(SERVER_IP, netns=lab.server, port=21, **server_kw)
        elif kind == "proftpd":
            cm = proftpd(SERVER_IP, netns=lab.server, port=21, **server_kw)
        else:
            cm = pyftpd(SERVER_IP, netns=lab.server, port=21, **server_kw)
        with cm as s:
            yield lab, s


def assert_private_named(d: dict[str, Any], setting: str) -> None:
    pasv = check(d, "pasv")
    assert pasv["verdict"] == "fail", pasv
    assert pasv["facts"]["advertised"] == SERVER_IP
    assert pasv["facts"]["class"] == "private"
    assert pasv["facts"]["control_connect"] == "ok"  # the range is forwarded
    assert "masquerade" in " ".join(d["diagnosis"])
    assert any(setting in f and ROUTER_WAN in f for f in d["fix"]), d["fix"]


def test_vsftpd_behind_nat_without_pasv_address() -> None:
    with behind_nat("vsftpd", lab_kw={"passive": RANGE}, pasv_ports=RANGE) as (lab, s):
        rc, d = doctor(lab, s)
    assert rc == 1 and d["server"] == "vsftpd"
    assert_private_named(d, f"pasv_address={ROUTER_WAN}")
    # EPSV needs no address: it works, and the listing goes over it.
    assert check(d, "epsv")["verdict"] == "ok"
    assert check(d, "listing")["facts"]["mode"] == "epsv"


def test_pyftpdlib_behind_nat_without_masquerade() -> None:
    with behind_nat("pyftpdlib", lab_kw={"passive": RANGE}, passive_ports=RANGE_S) as (lab, s):
        rc, d = doctor(lab, s)
    assert rc == 1 and d["server"] == "pyftpdlib"
    assert_private_named(d, f"masquerade_address = '{ROUTER_WAN}'")


def test_proftpd_behind_nat_without_masquerade() -> None:
    with behind_nat("proftpd", lab_kw={"passive": RANGE}, passive=RANGE) as (lab, s):
        rc, d = doctor(lab, s)
    assert rc == 1 and d["server"] == "proftpd"
    assert_private_named(d, f"MasqueradeAddress {ROUTER_WAN}")


def test_proftpd_behind_nat_with_masquerade_all_green() -> None:
    with behind_nat("proftpd", lab_kw={"passive": RANGE}, passive=RANGE,
                    masquerade=ROUTER_WAN) as (lab, s):
        rc, d = doctor(lab, s, "--write")
    assert rc == 0, [(c["id"], c["verdict"], c["summary"]) for c in d["checks"]]


def test_vsftpd_contest_case_zero_address_through_helper() -> None:
    # seeds/000: listen_ipv6=YES, pasv_address=172.16.0.2, the router's helper on.
    with behind_nat("vsftpd", lab_kw={"passive": RANGE, "helper": True}, listen_ipv6=True,
                    pasv_address=SERVER_IP, pasv_ports=RANGE) as (lab, s):
        rc, d = doctor(lab, s)
    assert rc == 1
    pasv = check(d, "pasv")
    assert pasv["verdict"] == "fail" and pasv["facts"]["advertised"] == "0.0.0.0"
    assert any("0,0,0,0" in e for e in pasv["evidence"])
    assert any("listen_ipv6=NO" in f for f in d["fix"])


def test_helper_rewrites_private_address_all_green() -> None:
    # No masquerade, but the router's FTP helper rewrites the plain 227 and opens the
    # data port by itself (no forwarded range needed).
    with behind_nat("vsftpd", lab_kw={"helper": True}, pasv_ports=RANGE) as (lab, s):
        rc, d = doctor(lab, s, "--write")
    assert check(d, "pasv")["facts"]["advertised"] == ROUTER_WAN
    assert rc == 0, [(c["id"], c["verdict"], c["summary"]) for c in d["checks"]]


def test_passive_range_not_forwarded_times_out() -> None:
    with behind_nat("vsftpd", pasv_ports=RANGE, pasv_address=ROUTER_WAN) as (lab, s):
        rc, d = doctor(lab, s)
    assert rc == 1
    assert check(d, "pasv")["facts"]["advertised"] == ROUTER_WAN  # address is right
    rng = check(d, "pasv-range")
    assert rng["verdict"] == "fail" and "timeout" in rng["facts"]["status"]
    assert all(RANGE[0] <= p <= RANGE[1] for p in rng["facts"]["ports"])
    fixes = " ".join(d["fix"])
    assert "forward TCP ports" in fixes and "pasv_min_port" in fixes
    assert "forward the passive range" in " ".join(d["diagnosis"])


def test_client_firewall_drops_inbound_active_blocked_on_our_side() -> None:
    with behind_nat("pyftpdlib", lab_kw={"passive": RANGE, "client_drops_inbound": True},
                    passive_ports=RANGE_S, masquerade=ROUTER_WAN) as (lab, s):
        rc, d = doctor(lab, s)
    # Passive works, so the exit status is 0; active mode is named as blocked on our side.
    assert rc == 0, d
    for cid in ("active-eprt", "active-port"):
        c = check(d, cid)
        assert c["verdict"] == "warn"
        assert "on our side" in c["cause"] and "firewall" in c["cause"]
    assert check(d, "pasv")["verdict"] == "ok"


def test_active_mode_ok_shows_source_port_without_firewall() -> None:
    with behind_nat("vsftpd", lab_kw={"passive": RANGE}, pasv_ports=RANGE,
                    pasv_address=ROUTER_WAN) as (lab, s):
        rc, d = doctor(lab, s, "--write")
    assert rc == 0, [(c["id"], c["verdict"], c["summary"]) for c in d["checks"]]
    src = check(d, "active-port")["facts"]["source"]
    assert src.startswith(ROUTER_WAN + ":")  # the server's connection, masqueraded


def test_ftps_through_helper_router_without_masquerade_helper_is_blind() -> None:
    # The helper rewrites the plain 227 but cannot read the TLS control channel.
    with behind_nat("pyftpdlib", lab_kw={"passive": RANGE, "helper": True},
                    passive_ports=RANGE_S, tls=True) as (lab, s):
        rc, d = doctor(lab, s, "--tls", "--compare-plain")
    assert rc == 1
    cmp_ = check(d, "pasv-tls")
    assert cmp_["verdict"] == "warn", cmp_
    assert cmp_["facts"] == {"plain": ROUTER_WAN, "tls": SERVER_IP}
    assert "blind" in cmp_["cause"]
    assert check(d, "pasv")["facts"]["advertised"] == SERVER_IP  # over TLS
    assert any("masquerade_address" in f for f in d["fix"])
