"""The doctor against real servers on loopback: healthy, misconfigured, read-only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from doctortools import run_doctor

from support.servers import proftpd, pyftpd, vsftpd

NATFTP = [sys.executable, "-m", "natftp"]


def verdicts(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r.id: r.verdict for r in report.results}


def test_healthy_pyftpdlib_all_green_exit_0() -> None:
    with pyftpd() as s:
        proc = subprocess.run([*NATFTP, "doctor", s.url, "--write", "--json", "--timeout",
                               "2"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        d = json.loads(proc.stdout)
        assert d["ok"] is True and d["server"] == "pyftpdlib"
        v = {c["id"]: c["verdict"] for c in d["checks"]}
        for cid in ("resolve", "connect", "banner", "login", "pasv", "epsv", "active-eprt",
                    "active-port", "listing", "write", "pasv-range"):
            assert v[cid] == "ok", (cid, d)
        assert d["diagnosis"] == [] and d["fix"] == []
        # --write cleaned up after itself.
        assert sorted(p.name for p in s.root.iterdir()) == ["hello.txt"]
        # The human report says it too.
        text = subprocess.run([*NATFTP, "doctor", s.url, "--timeout", "2"],
                              capture_output=True, text=True, timeout=60)
        assert text.returncode == 0
        assert "Diagnosis" in text.stdout and "passive transfers work" in text.stdout


def test_without_write_nothing_is_written() -> None:
    with pyftpd() as s:
        rep = run_doctor(s.url)
        assert verdicts(rep)["write"] == "skip"
        assert sorted(p.name for p in s.root.iterdir()) == ["hello.txt"]


def test_pyftpdlib_wrong_masquerade_address() -> None:
    # pyftpdlib binds its passive sockets to the control connection's local address
    # (127.0.0.1), so the advertised 127.0.0.2 refuses while 127.0.0.1:port accepts.
    with pyftpd(masquerade="127.0.0.2") as s:
        rep = run_doctor(s.url)
        pasv = rep.result("pasv")
        assert pasv is not None and pasv.verdict == "fail"
        assert pasv.facts["advertised"] == "127.0.0.2"
        assert pasv.facts["advertised_connect"] == "refused"
        assert pasv.facts["control_connect"] == "ok"
        assert any("masquerade_address" in f for f in rep.fixes), rep.fixes
        assert "127.0.0.1" in " ".join(rep.fixes)
        assert not rep.ok
        # EPSV and the listing still work: the doctor says which mode does.
        assert verdicts(rep)["epsv"] == "ok"
        assert verdicts(rep)["listing"] == "ok"


def test_pyftpdlib_read_only_user_names_perm() -> None:
    with pyftpd(perm="elr") as s:
        rep = run_doctor(s.url, write=True)
        w = rep.result("write")
        assert w is not None and w.verdict == "fail"
        assert any("550" in e for e in w.evidence)
        assert any("perm=" in f for f in rep.fixes), rep.fixes
        assert not rep.ok


def test_vsftpd_listen_ipv6_with_pasv_address_advertises_zero() -> None:
    # The contest case: an IPv6 listening socket, IPv4 clients through mapped addresses,
    # pasv_address set -> vsftpd prints 0,0,0,0.
    with vsftpd(listen_ipv6=True, pasv_address="192.0.2.77") as s:
        proc = subprocess.run([*NATFTP, "doctor", s.url, "--json", "--timeout", "2"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        d = json.loads(proc.stdout)
        assert d["server"] == "vsftpd"
        pasv = next(c for c in d["checks"] if c["id"] == "pasv")
        assert pasv["verdict"] == "fail"
        assert pasv["facts"]["advertised"] == "0.0.0.0"
        assert any("227" in e and "0,0,0,0" in e for e in pasv["evidence"])
        fix = " ".join(d["fix"])
        assert "listen_ipv6=NO" in fix and "listen=YES" in fix
        assert "0.0.0.0" in " ".join(d["diagnosis"])


def test_vsftpd_healthy_ipv4() -> None:
    with vsftpd() as s:
        rep = run_doctor(s.url, write=True)
        assert rep.server == "vsftpd"
        assert rep.ok, [(r.id, r.verdict, r.summary) for r in rep.results]


def test_vsftpd_writes_disabled_names_write_enable() -> None:
    with vsftpd(write=False) as s:
        rep = run_doctor(s.url, write=True)
        w = rep.result("write")
        assert w is not None and w.verdict == "fail"
        assert any("write_enable=YES" in f for f in rep.fixes), rep.fixes
        # Passive transfers themselves work: only the write check fails.
        assert [r.id for r in rep.results if r.verdict == "fail"] == ["write"]


def test_connection_refused_is_explained() -> None:
    from support.servers import free_port
    port = free_port()
    rep = run_doctor(f"ftp://u:p@127.0.0.1:{port}/")
    c = rep.result("connect")
    assert c is not None and c.verdict == "fail" and c.facts["status"] == "refused"
    assert "Nothing accepts connections" in c.cause
    assert not rep.ok
    assert rep.result("login") is not None and rep.result("login").verdict == "skip"


def test_wrong_password_is_a_login_failure() -> None:
    with pyftpd() as s:
        rep = run_doctor(s.url.replace(s.password, "nope"))
        login = rep.result("login")
        assert login is not None and login.verdict == "fail"
        assert "530" in " ".join(login.evidence)


def test_bad_url_exit_2() -> None:
    p = subprocess.run([*NATFTP, "doctor", "http://x/"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2 and "scheme" in p.stderr


def test_module_path_is_importable() -> None:
    """The servers come from the one support package (pytest's pythonpath), not from a
    copy beside these tests."""
    import support.servers

    assert Path(support.servers.__file__).parent == Path(__file__).parents[1] / "support"
    assert not Path(__file__).with_name("servers.py").exists()


def test_ftps_self_signed_certificate_and_protected_transfers() -> None:
    with pyftpd(tls=True, tls_required=True) as s:
        rep = run_doctor(s.url, tls=True, write=True)
        tls = rep.result("tls")
        assert tls is not None and tls.verdict == "warn"
        assert tls.facts["self_signed"] is True
        assert "not for 127.0.0.1" in tls.cause
        listing = rep.result("listing")
        assert listing is not None and listing.verdict == "ok" and listing.facts["tls"]
        assert verdicts(rep)["write"] == "ok"
        assert verdicts(rep)["active-port"] == "ok"  # TLS on an accepted data connection
        # The certificate warning does not fail the run: passive transfers work.
        assert rep.ok


def test_tls_required_without_tls_is_named() -> None:
    with pyftpd(tls=True, tls_required=True) as s:
        rep = run_doctor(s.url)
        login = rep.result("login")
        assert login is not None and login.verdict == "fail"
        assert "ftpes://" in " ".join(login.fix)
        assert "without TLS" in login.cause


def test_tls_asked_but_not_offered() -> None:
    with pyftpd() as s:
        rep = run_doctor(s.url, tls=True)
        tls = rep.result("tls")
        assert tls is not None and tls.verdict == "fail"
        assert any("TLS_FTPHandler" in f for f in tls.fix)


def test_proftpd_limit_write_denyall_names_limit_write() -> None:
    with proftpd(write=False) as s:
        rep = run_doctor(s.url, write=True)
        assert rep.server == "proftpd"
        w = rep.result("write")
        assert w is not None and w.verdict == "fail"
        assert any("<Limit WRITE>" in f for f in rep.fixes), rep.fixes
        assert [r.id for r in rep.results if r.verdict == "fail"] == ["write"]


def test_ftpes_url_means_tls_without_the_flag() -> None:
    """ftpes:// is explicit TLS for the doctor as for the client: the server demands TLS
    before USER, so a doctor that sent USER/PASS in the clear would fail the login."""
    with pyftpd(tls=True, tls_required=True) as s:
        rep = run_doctor(s.url.replace("ftp://", "ftpes://"))
        assert rep.target.startswith("ftpes://") and s.password not in rep.target
        assert verdicts(rep)["tls"] == "warn"  # self-signed, but TLS was used
        assert verdicts(rep)["login"] == "ok"
        listing = rep.result("listing")
        assert listing is not None and listing.verdict == "ok" and listing.facts["tls"]
        login = rep.result("login")
        assert login is not None and "-> AUTH TLS" in login.evidence
        assert not any(e.startswith("-> PASS") and s.password in e for e in login.evidence)
