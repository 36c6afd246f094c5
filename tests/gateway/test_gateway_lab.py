"""natftp gateway in the NAT lab, kernel FTP helper OFF: an unchanged vsftpd behind the
router, advertising its private address or 0,0,0,0 (S1: listen_ipv6=YES + pasv_address),
and the gateway on the server's host in front of it. The router forwards the control port
and the passive range to the gateway (the lab's own rules, as `natftp firewall` prints
them); vsftpd's own passive range is not forwarded. Every row of the NAT-lab matrix
(the same curl/lftp/ftplib commands) must list, download and upload with sha256 checked;
TLS-capable clients also through TLS termination."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from gwcells import ROW_NAMES, ROWS_BY_NAME, make_ctx, put_download, run_rows

from natftp.lab.core import Lab, LabError, list_namespaces, own_prefix, require_root_and_tools

USER, PASSWORD = "natftptest", "natftptest-pw"  # the vsftpd system user (setup-system.sh)
UPSTREAM_PORT = 2120
UPSTREAM_PASSIVE = (40000, 40049)  # vsftpd's own range: the router does not forward it


@pytest.fixture(autouse=True)
def _root_tools_and_cleanup() -> Iterator[None]:
    try:
        require_root_and_tools(("curl", "lftp", "timeout", "vsftpd"))
        pwd.getpwnam(USER)
    except (LabError, KeyError) as e:
        pytest.fail(f"{e} (scripts/setup-system.sh installs it; run `make test` as root)",
                    pytrace=False)
    before = set(list_namespaces(own_prefix()))
    yield
    left = set(list_namespaces(own_prefix())) - before
    assert not left, f"namespaces left behind: {sorted(left)}"


def _wait_listening(lab: Lab, node: str, port: int, proc: subprocess.Popen[Any],
                    log: Path) -> None:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited {proc.returncode}: "
                                 f"{log.read_text(errors='replace')[-2000:]}")
        if lab.run(node, ["ss", "-Hltn", f"sport = :{port}"], timeout=5).stdout.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} in {node}: {log.read_text()[-2000:]}")


@contextmanager
def _vsftpd(lab: Lab, node: str, root: Path, state: Path, zero: bool,
            public: str) -> Iterator[Path]:
    """Debian's vsftpd, configured as it would be by someone who did not think of NAT."""
    listen = lab.addr(node)
    log = state / "vsftpd.log"
    lines = [
        "background=NO", f"listen_port={UPSTREAM_PORT}", "anonymous_enable=NO",
        "local_enable=YES", f"local_root={root}", "chroot_local_user=YES",
        "allow_writeable_chroot=YES", "seccomp_sandbox=NO",
        "secure_chroot_dir=/var/run/vsftpd/empty", "pam_service_name=vsftpd",
        "userlist_enable=NO", "tcp_wrappers=NO", "syslog_enable=NO",
        f"vsftpd_log_file={log}", "xferlog_enable=YES", "xferlog_std_format=NO",
        "log_ftp_protocol=YES", "connect_from_port_20=NO", "write_enable=YES",
        "local_umask=022", "pasv_enable=YES", "port_enable=YES",
        f"pasv_min_port={UPSTREAM_PASSIVE[0]}", f"pasv_max_port={UPSTREAM_PASSIVE[1]}",
        "max_per_ip=0", "max_clients=0",
    ]
    if zero:  # S1: an IPv6 listener plus pasv_address -> "227 (0,0,0,0,...)"
        lines += ["listen=NO", "listen_ipv6=YES", f"listen_address6=::ffff:{listen}",
                  f"pasv_address={public}", "pasv_addr_resolve=NO"]
    else:
        lines += ["listen=YES", "listen_ipv6=NO", f"listen_address={listen}"]
    conf = state / "vsftpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    os.chmod(conf, 0o600)
    Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
    with open(state / "vsftpd.out", "ab") as out:
        p = lab.spawn(node, ["/usr/sbin/vsftpd", str(conf)], stdin=subprocess.DEVNULL,
                      stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(lab, node, UPSTREAM_PORT, p, state / "vsftpd.out")
        yield log
    finally:
        lab.stop(p)


@contextmanager
def _gateway(lab: Lab, node: str, public: str | None, state: Path) -> Iterator[Path]:
    addr = lab.addr(node)
    lo, hi = lab.passive_ports
    log = state / "gateway.log"
    masquerade = ["--masquerade", public] if public else []
    with open(log, "ab") as out:
        p = lab.spawn(node, [sys.executable, "-m", "natftp", "gateway", "--listen",
                             f"{addr}:{lab.control_port}", "--upstream",
                             f"{addr}:{UPSTREAM_PORT}", *masquerade,
                             "--passive-ports", f"{lo}-{hi}", "--data-timeout", "6",
                             "--tls"],
                      stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(lab, node, lab.control_port, p, log)
        yield log
    finally:
        lab.stop(p)


def _pasv_seen_by(lab: Lab, node: str, host: str, port: int) -> str:
    code = ("import ftplib,sys; f=ftplib.FTP(); f.connect(sys.argv[1], int(sys.argv[2]), "
            "timeout=5); f.login(sys.argv[3], sys.argv[4]); print(f.sendcmd('PASV'))")
    r = lab.run(node, [sys.executable, "-c", code, host, str(port), USER, PASSWORD])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


TLS_SCRIPT = r"""
import ftplib, hashlib, io, ssl, sys
host, port, user, pw, up_name = sys.argv[1:6]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for passive in (True, False):
    f = ftplib.FTP_TLS(context=ctx)
    f.connect(host, int(port), timeout=6)
    f.auth(); f.login(user, pw); f.prot_p(); f.set_pasv(passive)
    assert "down.bin" in f.nlst()
    b = io.BytesIO(); f.retrbinary("RETR down.bin", b.write)
    print(hashlib.sha256(b.getvalue()).hexdigest())
    f.storbinary("STOR " + up_name + ("p" if passive else "a"), io.BytesIO(b"tls" * 20000))
    f.quit()
"""


def _check_through_gateway(zero: bool, topology: str, client: str, server: str,
                           target: str, public: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="natftp-gwlab-"))
    try:
        os.chmod(tmp, 0o755)  # vsftpd enters the root as natftptest
        owner = pwd.getpwnam(USER)
        root, state = tmp / "root", tmp / "state"
        root.mkdir()
        state.mkdir()
        os.chown(root, owner.pw_uid, owner.pw_gid)
        sha = put_download(root)
        with Lab.build(topology, helper=False) as lab, \
                _vsftpd(lab, server, root, state, zero, public), \
                _gateway(lab, server, public, state) as gwlog:
            # The premise: vsftpd itself tells a wrong address; the gateway the public one.
            direct = _pasv_seen_by(lab, server, lab.addr(server), UPSTREAM_PORT)
            wrong = "(0,0,0,0," if zero else f"({lab.addr(server).replace('.', ',')},"
            assert wrong in direct, direct
            assert f"({public.replace('.', ',')}," in _pasv_seen_by(
                lab, client, target, lab.control_port)

            jobs = [(ROWS_BY_NAME[name], make_ctx(
                lab, client=client, client_addr=lab.addr(client), target=target,
                port=lab.control_port, user=USER, password=PASSWORD,
                workdir=tmp / f"cell-{i}", server_root=root, down_sha=sha, tag=f"r{i}"))
                for i, name in enumerate(ROW_NAMES)]
            cells = run_rows(jobs)
            bad = {k: c.detail for k, c in cells.items() if not c.ok}
            assert not bad, f"{bad}\n--- gateway log ---\n{gwlog.read_text()[-4000:]}"

            # TLS termination in front of the plain vsftpd: ftplib FTP_TLS prot_p, both
            # modes, and curl --ssl-reqd (EPSV and trusting PASV).
            r = lab.run(client, [sys.executable, "-c", TLS_SCRIPT, target,
                                 str(lab.control_port), USER, PASSWORD, "tls-up"],
                        timeout=40)
            assert r.returncode == 0, r.stderr + gwlog.read_text()[-3000:]
            assert r.stdout.split() == [sha, sha]
            assert (root / "tls-upp").read_bytes() == b"tls" * 20000
            assert (root / "tls-upa").read_bytes() == b"tls" * 20000
            url = f"ftp://{USER}:{PASSWORD}@{target}:{lab.control_port}/"
            for extra in ([], ["--disable-epsv", "--no-ftp-skip-pasv-ip"]):
                out = tmp / "curl-tls-down"
                r = lab.run(client, ["curl", "-sS", "-k", "--ssl-reqd", "--max-time", "10",
                                     *extra, "-o", str(out), url + "down.bin"], timeout=20)
                assert r.returncode == 0, r.stderr
                assert hashlib.sha256(out.read_bytes()).hexdigest() == sha
            log = gwlog.read_text()
            assert "client passive / upstream passive" in log
            assert "client active / upstream active" in log
            assert "tls=yes" in log
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_contest_vsftpd_private_address_every_client_through_gateway() -> None:
    _check_through_gateway(False, "contest", "client", "server", "192.168.10.1",
                           "192.168.10.1")


def test_contest_vsftpd_zero_address_every_client_through_gateway() -> None:
    _check_through_gateway(True, "contest", "client", "server", "192.168.10.1",
                           "192.168.10.1")


def test_fourway_public_client_vsftpd_zero_address_through_gateway() -> None:
    _check_through_gateway(True, "fourway", "cpub", "snat", "198.51.100.2", "198.51.100.2")


def test_public_client_told_a_private_address_is_warned_about_once() -> None:
    """Without --masquerade a public client is told the gateway's private address (all
    the gateway knows); like the server, the gateway says so in its log, once per client
    network, with the fix."""
    tmp = Path(tempfile.mkdtemp(prefix="natftp-gwlab-"))
    try:
        os.chmod(tmp, 0o755)
        owner = pwd.getpwnam(USER)
        root, state = tmp / "root", tmp / "state"
        root.mkdir()
        state.mkdir()
        os.chown(root, owner.pw_uid, owner.pw_gid)
        with Lab.build("fourway", helper=False) as lab, \
                _vsftpd(lab, "snat", root, state, False, "198.51.100.2"), \
                _gateway(lab, "snat", None, state) as gwlog:
            private = lab.addr("snat")
            for _ in range(2):
                told = _pasv_seen_by(lab, "cpub", "198.51.100.2", lab.control_port)
                assert f"({private.replace('.', ',')}," in told, told
            log = gwlog.read_text()
            assert log.count("was told the gateway's private address") == 1, log[-3000:]
            assert f"private address {private}" in log and "--masquerade" in log
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
