"""The gateway follows the same protocol rules as the server and the client (issue 15):
AUTH SSL protects data, lftp's unspecified-address EPRT is the client itself, a PASV
address that is not the upstream's own is not followed; and it follows serve's rules for
TLS (offered when asked for), masquerade hostnames and advertised ports."""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gwrun import gateway

from natftp.client import BlockingClient
from natftp.gateway.server import Gateway, GatewayConfig
from natftp.proto.addr import ip
from natftp.server.app import Server
from natftp.server.config import from_dict

from support.peers import free_port, free_port_range, pyftpdlib, vsftpd


@contextlib.contextmanager
def natftp_serve(root: Path, host: str = "127.0.0.1", **cfg: object) -> Iterator[int]:
    """natftp's server in this process (a thread runs its loop), anonymous read access."""
    root.mkdir(exist_ok=True)
    (root / "hello.txt").write_text("hello\n")
    config = from_dict({"root": str(root), "listen": [f"{host}:0" if ":" not in host
                                                      else f"[{host}]:0"],
                        "anonymous": {"enabled": True}, **cfg})
    loop = asyncio.new_event_loop()
    srv = Server(config)
    bound = loop.run_until_complete(srv.start())
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        yield bound[0].port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
        loop.run_until_complete(srv.stop())
        loop.close()


def _no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _nlst_after_auth_ssl(host: str, port: int, user: str, password: str) -> list[str]:
    """AUTH SSL, then a listing over a TLS data connection *without* PROT P: works only
    when AUTH SSL implied PROT P (the data connection is plain otherwise)."""
    f = ftplib.FTP_TLS(context=_no_verify())
    f.connect(host, port, timeout=8)
    try:
        assert f.voidcmd("AUTH SSL").startswith("234")
        f.sock = f.context.wrap_socket(f.sock, server_hostname=host)
        f.file = f.sock.makefile("r", encoding=f.encoding)
        f.login(user, password)
        f._prot_p = True  # ftplib wraps data connections; no PROT P is sent
        return f.nlst()
    finally:
        f.close()


def test_auth_ssl_implies_prot_p_in_server_and_gateway(tmp_path: Path) -> None:
    with natftp_serve(tmp_path / "srv", tls={"enabled": True,
                                             "state_dir": str(tmp_path / "state")}) as port:
        assert "hello.txt" in _nlst_after_auth_ssl("127.0.0.1", port, "anonymous", "a@b")
    with pyftpdlib() as peer, gateway((peer.host, peer.port), args=["--tls"]) as gw:
        (peer.root / "hello.txt").write_text("hello\n")
        assert "hello.txt" in _nlst_after_auth_ssl(gw.host, gw.port, peer.user,
                                                   peer.password)


def _eprt_unspecified(host: str, port: int, user: str, password: str) -> bytes:
    """What lftp does on IPv6: listen on [::] and send ``EPRT |2|::|port|``."""
    f = ftplib.FTP()
    f.connect(host, port, timeout=8)
    lsock = socket.create_server(("::", 0), family=socket.AF_INET6, backlog=1)
    lsock.settimeout(8)
    try:
        f.login(user, password)
        r = f.sendcmd(f"EPRT |2|::|{lsock.getsockname()[1]}|")
        assert r.startswith("200"), r
        f.putcmd("NLST")
        conn, peer = lsock.accept()
        assert ip(peer[0]) == ip("::1")
        with conn:
            assert f.getresp()[:3] in ("125", "150")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
        assert f.voidresp().startswith("226")
        return data
    finally:
        lsock.close()
        f.close()


def test_eprt_with_unspecified_address_is_the_client_in_server_and_gateway(
        tmp_path: Path) -> None:
    with natftp_serve(tmp_path / "srv", host="::1") as port:
        assert b"hello.txt" in _eprt_unspecified("::1", port, "anonymous", "a@b")
    with pyftpdlib() as peer, gateway((peer.host, peer.port), host="::1") as gw:
        (peer.root / "hello.txt").write_text("hello\n")
        assert b"hello.txt" in _eprt_unspecified(gw.host, gw.port, peer.user, peer.password)
        assert "client active" in gw.log_text()


class PasvTrap:
    """An FTP server whose 227 names 127.0.0.2 (a third host) while its data listener is
    on its own address 127.0.0.1, same port; a listener on 127.0.0.2 records anyone who
    trusted the 227."""

    def __init__(self) -> None:
        self.ctl = socket.create_server(("127.0.0.1", 0))
        self.data = socket.create_server(("127.0.0.1", 0))
        self.dport = self.data.getsockname()[1]
        self.trap = socket.create_server(("127.0.0.2", self.dport))
        self.trap.settimeout(0.5)
        self.port = self.ctl.getsockname()[1]
        self.trapped: list[str] = []
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        for _ in range(4):
            try:
                conn, _ = self.ctl.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        p = self.dport
        with conn, conn.makefile("rb") as rf:
            conn.sendall(b"220 trap\r\n")
            for raw in rf:
                verb = raw.decode().split(" ")[0].strip().upper()
                if verb in ("NLST", "LIST"):
                    conn.sendall(b"150 here\r\n")
                    self.data.settimeout(8)
                    try:
                        d, _ = self.data.accept()
                    except OSError:
                        conn.sendall(b"425 nobody came\r\n")
                        continue
                    with d:
                        d.sendall(b"file.txt\r\n")
                    conn.sendall(b"226 done\r\n")
                    continue
                conn.sendall({
                    "USER": b"331 pw\r\n", "PASS": b"230 in\r\n", "QUIT": b"221 bye\r\n",
                    "PASV": f"227 Entering Passive Mode (127,0,0,2,{p >> 8},{p & 255}).\r\n"
                    .encode(), "EPSV": b"500 no EPSV here\r\n", "FEAT": b"502 no\r\n",
                }.get(verb, b"200 ok\r\n"))
                if verb == "QUIT":
                    return

    def check_trap(self) -> None:
        with contextlib.suppress(TimeoutError):
            conn, peer = self.trap.accept()
            conn.close()
            self.trapped.append(peer[0])

    def close(self) -> None:
        for s in (self.ctl, self.data, self.trap):
            s.close()


def test_client_and_gateway_agree_on_pasv_trust() -> None:
    """Neither follows a 227 to a third host: both connect to the server they talk to."""
    trap = PasvTrap()
    try:
        with BlockingClient(host="127.0.0.1", port=trap.port, user="u", password="p",
                            mode="passive", epsv=False) as c:
            assert c.names() == ["file.txt"]
            assert c.last_data_address == ("127.0.0.1", trap.dport)
        trap.check_trap()
        with gateway(("127.0.0.1", trap.port), args=["--upstream-mode", "passive"]) as gw:
            f = ftplib.FTP()
            f.connect(gw.host, gw.port, timeout=8)
            f.login("u", "p")
            assert f.nlst() == ["file.txt"]
            f.close()
            assert "connecting to 127.0.0.1 instead" in gw.log_text()
        trap.check_trap()
        assert trap.trapped == []
    finally:
        trap.close()


def test_masquerade_hostname_follows_a_dns_change_as_serve_does() -> None:
    answers = [ip("203.0.113.1")]

    async def fake(host: str) -> list:  # type: ignore[type-arg]
        assert host == "home.example.net"
        return list(answers)

    async def main() -> None:
        cfg = GatewayConfig(listen=("127.0.0.1", 0), upstream=("127.0.0.1", free_port()),
                            masquerade="home.example.net", refresh_interval=0.1)
        gw = Gateway(cfg, resolve=fake)
        await gw.start()
        try:
            told = gw.policy.advertise("172.16.0.2", "198.51.100.9").address
            assert told == ip("203.0.113.1")
            answers[0] = ip("203.0.113.2")
            for _ in range(100):  # bounded: the refresher runs every 0.1 s
                await asyncio.sleep(0.05)
                if gw.policy.advertise("172.16.0.2", "198.51.100.9").address != told:
                    break
            assert gw.policy.advertise("172.16.0.2", "198.51.100.9").address == \
                ip("203.0.113.2")
        finally:
            await gw.close()

    asyncio.run(main())


def test_masquerade_hostname_is_resolved_by_the_command(tmp_path: Path) -> None:
    """`natftp gateway --masquerade localhost` resolves it at start (it used to be kept
    as an unresolved name, so public clients were told the private address)."""
    with pyftpdlib() as peer, gateway((peer.host, peer.port), masquerade="localhost") as gw:
        f = ftplib.FTP()
        f.connect(gw.host, gw.port, timeout=8)
        f.login(peer.user, peer.password)
        f.close()
        assert "masquerade localhost now resolves to 127.0.0.1" in gw.log_text()


def test_unreachable_warning_once_per_client_network(caplog: pytest.LogCaptureFixture,
                                                     ) -> None:
    gw = Gateway(GatewayConfig(listen=("127.0.0.1", 0), upstream=("127.0.0.1", 21)))
    with caplog.at_level(logging.WARNING, logger="natftp.gateway"):
        gw.warn_unreachable(ip("198.51.100.9"), ip("172.16.0.2"))
        gw.warn_unreachable(ip("198.51.100.10"), ip("172.16.0.2"))
        gw.warn_unreachable(ip("203.0.113.1"), ip("172.16.0.2"))
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2 and "198.51.100.0/24" in msgs[0] and "--masquerade" in msgs[0]


def test_advertised_ports_are_what_clients_are_told() -> None:
    low, high = free_port_range("127.0.0.1", 4)
    with pyftpdlib() as peer, gateway((peer.host, peer.port), args=[
            "--passive-ports", f"{low}-{high}", "--advertised-ports", "41000-41003"]) as gw:
        (peer.root / "hello.txt").write_text("hello\n")
        f = ftplib.FTP()
        f.connect(gw.host, gw.port, timeout=8)
        f.login(peer.user, peer.password)
        try:
            for verb in ("EPSV", "PASV"):
                told = (ftplib.parse229(f.sendcmd(verb), gw.host)[1] if verb == "EPSV"
                        else ftplib.parse227(f.sendcmd(verb))[1])
                assert 41000 <= told <= 41003, told
                # no NAT here: the real port is the same offset into --passive-ports
                with socket.create_connection((gw.host, told - 41000 + low), 8) as d:
                    f.putcmd("NLST")
                    assert f.getresp()[:3] in ("125", "150")
                    assert b"hello.txt" in d.makefile("rb").read()
                assert f.voidresp().startswith("226")
        finally:
            f.close()


@pytest.mark.parametrize("args,msg", [
    (["--advertised-ports", "41000-41003"], "give both"),
    (["--passive-ports", "40000-40003", "--advertised-ports", "41000-41001"], "differ"),
    (["--passive-ports", "9-1"], "LOW above HIGH"),
    (["--require-tls"], "--require-tls needs TLS"),
    (["--tls", "--no-tls"], "contradict"),
    (["--listen", "[::1:2121"], "no closing ]"),
])
def test_bad_options_are_refused_with_the_reason(args: list[str], msg: str) -> None:
    cmd = [sys.executable, "-m", "natftp", "gateway", "--upstream", "127.0.0.1:21"]
    if "--listen" not in args:
        cmd += ["--listen", "127.0.0.1:0"]
    r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# --- TLS is offered when asked for ---------------------------------------------------

def test_tls_is_not_offered_by_default_even_when_the_upstream_offers_it(
        tmp_path: Path) -> None:
    from natftp.tls import self_signed

    cert, key = self_signed(tmp_path)
    with vsftpd(extra=["ssl_enable=YES", f"rsa_cert_file={cert}",
                       f"rsa_private_key_file={key}", "force_local_logins_ssl=NO",
                       "force_local_data_ssl=NO"]) as peer:
        f = ftplib.FTP()
        f.connect(peer.host, peer.port, timeout=8)
        assert "AUTH TLS" in f.sendcmd("FEAT")  # the premise: vsftpd offers it
        f.close()
        with gateway((peer.host, peer.port)) as gw:
            f = ftplib.FTP()
            f.connect(gw.host, gw.port, timeout=8)
            feat = f.sendcmd("FEAT")
            assert "AUTH" not in feat and "PBSZ" not in feat and "PROT" not in feat, feat
            assert "EPSV" in feat
            with pytest.raises(ftplib.error_perm, match="502.*--tls"):
                f.sendcmd("AUTH TLS")
            f.login(peer.user, peer.password)  # and the plain session goes on
            f.close()
            assert "TLS not offered" in gw.log_text()


def test_lftp_with_default_settings_through_a_gateway_in_front_of_vsftpd(
        tmp_path: Path) -> None:
    """lftp uses TLS whenever FEAT offers it and verifies the certificate: with the old
    default (a self-signed certificate offered) every command failed."""
    home = tmp_path / "home"
    home.mkdir()
    with vsftpd() as peer, gateway((peer.host, peer.port)) as gw:
        (peer.root / "down.bin").write_bytes(os.urandom(300_000))
        src = tmp_path / "up.bin"
        src.write_bytes(os.urandom(200_000))
        got = tmp_path / "got.bin"
        script = "; ".join([
            # bounded waits only; TLS, passive mode and everything else as shipped
            "set net:timeout 10", "set net:max-retries 2",
            "set net:reconnect-interval-base 1",
            f"open -u {peer.user},{peer.password} -p {gw.port} ftp://{gw.host}",
            "ls", f"get down.bin -o {got}", f"put {src} -o up.bin"])
        r = subprocess.run(["lftp", "-d", "-c", script], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "HOME": str(home)})
        assert r.returncode == 0, r.stderr[-3000:] + gw.log_text()[-2000:]
        assert "down.bin" in r.stdout
        assert got.read_bytes() == (peer.root / "down.bin").read_bytes()
        assert (peer.root / "up.bin").read_bytes() == src.read_bytes()
        # lftp tries AUTH TLS even unannounced; the refusal names the way to turn it on
        assert "<--- 502 This gateway does not offer TLS" in r.stderr
