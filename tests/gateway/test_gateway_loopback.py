"""natftp gateway on loopback in front of real servers that advertise a wrong passive
address: every client of the lab matrix (the same commands) lists, downloads and uploads
through it with content checked; TLS termination; mode translation; bad input."""

from __future__ import annotations

import ftplib
import hashlib
import io
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gwcells import ROW_NAMES, ROWS_BY_NAME, LocalRunner, make_ctx, put_download, run_rows
from gwrun import GW, gateway

from support.peers import Peer, free_port, pyftpdlib, vsftpd

# A passive address that is wrong for a client on this host: nothing listens on 127.0.0.9,
# so a client that trusts the 227 gets "connection refused" at once.
WRONG = "127.0.0.9"


@pytest.fixture(scope="module")
def wrong_pasv() -> Iterator[tuple[Peer, GW, str]]:
    """pyftpdlib advertising 127.0.0.9 (like a server telling its private address)."""
    with pyftpdlib(masquerade=WRONG) as peer:
        sha = put_download(peer.root)
        with gateway((peer.host, peer.port)) as gw:
            yield peer, gw, sha


@pytest.fixture(scope="module")
def zero_pasv() -> Iterator[tuple[Peer, GW, str]]:
    """vsftpd with listen_ipv6=YES + pasv_address: it answers PASV with 0,0,0,0 (S1)."""
    with vsftpd(listen_ipv6=True, masquerade="127.0.0.1") as peer:
        sha = put_download(peer.root)
        with gateway((peer.host, peer.port)) as gw:
            yield peer, gw, sha


def _pasv_reply(host: str, port: int, user: str, password: str) -> str:
    f = ftplib.FTP()
    f.connect(host, port, timeout=5)
    try:
        f.login(user, password)
        return f.sendcmd("PASV")
    finally:
        f.close()


def test_upstreams_really_advertise_wrong_addresses(wrong_pasv: tuple[Peer, GW, str],
                                                    zero_pasv: tuple[Peer, GW, str]) -> None:
    """The premise: directly, the servers tell a wrong address; through the gateway, ours."""
    p, gw, _ = wrong_pasv
    assert "(127,0,0,9," in _pasv_reply(p.host, p.port, p.user, p.password)
    assert "(127,0,0,1," in _pasv_reply(gw.host, gw.port, p.user, p.password)
    z, zgw, _ = zero_pasv
    assert "(0,0,0,0," in _pasv_reply(z.host, z.port, z.user, z.password)
    r = _pasv_reply(zgw.host, zgw.port, z.user, z.password)
    assert "(127,0,0,1," in r
    port = int(r.split(",")[-2]) * 256 + int(r.split(",")[-1].rstrip(").").split(")")[0])
    assert zgw.passive[0] <= port <= zgw.passive[1]


def _run_all(setup: tuple[Peer, GW, str], tmp_path: Path, name: str) -> None:
    peer, gw, sha = setup
    jobs = [(ROWS_BY_NAME[row], make_ctx(
        LocalRunner(), client="local", client_addr="127.0.0.1", target=gw.host, port=gw.port,
        user=peer.user, password=peer.password, workdir=tmp_path / f"{name}-{i}",
        server_root=peer.root, down_sha=sha, tag=f"{name}-{i}")) for i, row in
        enumerate(ROW_NAMES)]
    cells = run_rows(jobs)
    bad = {k: c.detail for k, c in cells.items() if not c.ok}
    assert not bad, bad


def test_every_matrix_client_through_gateway_pyftpdlib_wrong_address(
        wrong_pasv: tuple[Peer, GW, str], tmp_path: Path) -> None:
    _run_all(wrong_pasv, tmp_path, "wrong")
    log = wrong_pasv[1].log_text()
    assert "client passive / upstream passive" in log
    assert "client active / upstream active" in log
    assert "relay=splice" in log


def test_every_matrix_client_through_gateway_vsftpd_zero_address(
        zero_pasv: tuple[Peer, GW, str], tmp_path: Path) -> None:
    _run_all(zero_pasv, tmp_path, "zero")


def test_trusting_client_fails_without_gateway(wrong_pasv: tuple[Peer, GW, str],
                                               tmp_path: Path) -> None:
    """Control: the same trusting row directly against the server fails (so the rows can)."""
    peer, _, sha = wrong_pasv
    ctx = make_ctx(LocalRunner(), client="local", client_addr="127.0.0.1", target=peer.host,
                   port=peer.port, user=peer.user, password=peer.password,
                   workdir=tmp_path / "direct", server_root=peer.root, down_sha=sha,
                   tag="direct", timeout=5)
    cell = ROWS_BY_NAME["curl PASV trust"].run(ctx)
    assert not cell.ok


# --- mode translation ------------------------------------------------------------------

def _ftplib_roundtrip(host: str, port: int, peer: Peer, passive: bool, tag: str,
                      tls: bool = False) -> None:
    f: ftplib.FTP
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        f = ftplib.FTP_TLS(context=ctx)
    else:
        f = ftplib.FTP()
    f.connect(host, port, timeout=8)
    try:
        if isinstance(f, ftplib.FTP_TLS):
            f.auth()
            f.login(peer.user, peer.password)
            f.prot_p()
        else:
            f.login(peer.user, peer.password)
        f.set_pasv(passive)
        assert "down.bin" in f.nlst()
        buf = io.BytesIO()
        f.retrbinary("RETR down.bin", buf.write)
        assert hashlib.sha256(buf.getvalue()).digest() == hashlib.sha256(
            (peer.root / "down.bin").read_bytes()).digest()
        up = bytes(range(256)) * 700 + tag.encode()
        f.storbinary(f"STOR up-{tag}.bin", io.BytesIO(up))
        assert (peer.root / f"up-{tag}.bin").read_bytes() == up
        f.quit()
    finally:
        f.close()


def test_passive_client_with_upstream_that_refuses_passive() -> None:
    """pyftpdlib without PASV/EPSV: the gateway falls back to PORT upstream (auto mode)."""
    with pyftpdlib(pasv=False, epsv=False) as peer:
        put_download(peer.root)
        with gateway((peer.host, peer.port)) as gw:
            _ftplib_roundtrip(gw.host, gw.port, peer, passive=True, tag="p2a")
            r = subprocess.run(["curl", "-sS", "--max-time", "8",
                                f"ftp://{peer.user}:{peer.password}@{gw.host}:{gw.port}/"],
                               capture_output=True, text=True, timeout=15)
            assert r.returncode == 0 and "down.bin" in r.stdout, r.stderr
            assert "client passive / upstream active" in gw.log_text()


def test_active_client_with_upstream_that_refuses_active() -> None:
    """vsftpd with port_enable=NO: active clients are served in passive mode upstream."""
    with vsftpd(extra=["port_enable=NO"]) as peer:
        put_download(peer.root)
        with gateway((peer.host, peer.port), args=["--upstream-mode", "passive"]) as gw:
            _ftplib_roundtrip(gw.host, gw.port, peer, passive=False, tag="a2p")
            assert "client active / upstream passive" in gw.log_text()
            assert "client active / upstream active" not in gw.log_text()


# --- TLS termination -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_gw() -> Iterator[tuple[Peer, GW, str]]:
    with pyftpdlib(masquerade=WRONG) as peer:
        sha = put_download(peer.root)
        with gateway((peer.host, peer.port), implicit=True) as gw:
            yield peer, gw, sha


def test_tls_termination_ftplib_prot_p(tls_gw: tuple[Peer, GW, str]) -> None:
    peer, gw, _ = tls_gw
    _ftplib_roundtrip(gw.host, gw.port, peer, passive=True, tag="tlsp", tls=True)
    _ftplib_roundtrip(gw.host, gw.port, peer, passive=False, tag="tlsa", tls=True)
    log = gw.log_text()
    assert "tls=yes" in log and "relay=copy" in log


@pytest.mark.parametrize("mode", ["explicit EPSV", "explicit PASV", "implicit"])
def test_tls_termination_curl(tls_gw: tuple[Peer, GW, str], tmp_path: Path,
                              mode: str) -> None:
    peer, gw, sha = tls_gw
    if mode == "implicit":
        base = ["curl", "-sS", "-k", "--max-time", "10"]
        url = gw.url(peer.user, peer.password, "ftps")
    else:
        base = ["curl", "-sS", "-k", "--ssl-reqd", "--max-time", "10"]
        if mode == "explicit PASV":
            base += ["--disable-epsv", "--no-ftp-skip-pasv-ip"]
        url = gw.url(peer.user, peer.password)
    r = subprocess.run([*base, url], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "down.bin" in r.stdout, r.stderr
    out = tmp_path / "down"
    r = subprocess.run([*base, "-o", str(out), url + "down.bin"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha
    src = tmp_path / "up"
    src.write_bytes(b"tls upload " * 9000)
    name = f"up-curl-{mode.replace(' ', '-')}.bin"
    r = subprocess.run([*base, "-T", str(src), url + name], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    assert (peer.root / name).read_bytes() == src.read_bytes()


def test_plain_client_cannot_skip_tls_when_required() -> None:
    with pyftpdlib() as peer, gateway((peer.host, peer.port),
                                            args=["--tls", "--require-tls"]) as gw:
        f = ftplib.FTP()
        f.connect(gw.host, gw.port, timeout=5)
        with pytest.raises(ftplib.error_perm, match="requires TLS"):
            f.login(peer.user, peer.password)
        f.close()


# --- control-connection relaying -------------------------------------------------------

class Ctl:
    """A raw control connection (for pipelining and hand-made commands)."""

    def __init__(self, host: str, port: int) -> None:
        self.s = socket.create_connection((host, port), timeout=5)
        self.buf = b""

    def line(self) -> str:
        while b"\n" not in self.buf:
            chunk = self.s.recv(4096)
            if not chunk:
                raise EOFError(f"closed; pending {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode().rstrip("\r")

    def reply(self) -> list[str]:
        first = self.line()
        lines = [first]
        if first[3:4] == "-":
            while not (lines[-1][:3] == first[:3] and lines[-1][3:4] == " "):
                lines.append(self.line())
        return lines

    def send(self, raw: bytes) -> None:
        self.s.sendall(raw)

    def close(self) -> None:
        self.s.close()


def test_pipelined_commands_and_multiline_reply(wrong_pasv: tuple[Peer, GW, str]) -> None:
    peer, gw, _ = wrong_pasv
    c = Ctl(gw.host, gw.port)
    try:
        assert c.reply()[0].startswith("220")
        c.send(f"USER {peer.user}\r\nPASS {peer.password}\r\nPWD\r\nFEAT\r\nNOOP\r\n"
               "EPSV\r\nNLST\r\n".encode())
        assert c.reply()[0].startswith("331")
        assert c.reply()[0].startswith("230")
        assert c.reply()[0].startswith("257")
        feat = c.reply()
        assert feat[0].startswith("211-") and feat[-1].startswith("211 ")
        assert " EPSV" in feat and " MDTM" in feat
        assert " AUTH TLS" not in feat  # TLS is offered only when asked for (--tls)
        assert c.reply()[0].startswith("200")
        epsv = c.reply()[0]
        assert epsv.startswith("229")
        port = int(epsv.split("|||")[1].split("|")[0])
        with socket.create_connection((gw.host, port), timeout=5) as d:
            assert c.reply()[0][:3] in ("125", "150")
            data = b""
            while chunk := d.recv(4096):
                data += chunk
        assert b"down.bin" in data
        assert c.reply()[0].startswith("226")
        c.send(b"QUIT\r\n")
        assert c.reply()[0].startswith("221")
    finally:
        c.close()


def test_port_to_third_host_is_refused_and_nothing_relayed() -> None:
    """vsftpd logs every command it gets: the refused PORT/EPRT never reach it, and the
    third host never sees a connection."""
    third = socket.socket()
    third.bind(("127.0.0.2", 0))
    third.listen(4)
    third.settimeout(1.5)
    tport = third.getsockname()[1]
    with vsftpd() as peer, gateway((peer.host, peer.port)) as gw:
        c = Ctl(gw.host, gw.port)
        try:
            c.reply()
            c.send(f"USER {peer.user}\r\nPASS {peer.password}\r\n".encode())
            c.reply()
            assert c.reply()[0].startswith("230")
            c.send(f"PORT 127,0,0,2,{tport >> 8},{tport & 255}\r\n".encode())
            r = c.reply()[0]
            assert r.startswith("501") and "127.0.0.2" in r and "bounce" in r, r
            c.send(f"EPRT |1|127.0.0.2|{tport}|\r\n".encode())
            r = c.reply()[0]
            assert r.startswith("501") and "bounce" in r, r
            c.send(b"PORT 127,0,0,1,0,21\r\n")
            r = c.reply()[0]
            assert r.startswith("501") and "below 1024" in r, r
            c.send(b"PORT 1,2,3\r\n")
            r = c.reply()[0]
            assert r.startswith("501") and "six" in r, r
            c.send(b"RETR down.bin\r\n")  # no data connection was set up upstream
            r = c.reply()[0]
            assert r.startswith("425"), r
            c.send(b"NOOP\r\n")
            assert c.reply()[0].startswith("200")
        finally:
            c.close()
            with pytest.raises(TimeoutError):
                third.accept()
            third.close()
        log = peer.log_text()
        assert '"NOOP"' in log, log[-2000:]  # vsftpd did log this session's commands
        assert '"RETR down.bin"' in log
        assert '"PORT ' not in log and '"EPRT ' not in log, log[-2000:]


# --- a fake upstream, only for protocol errors no real server makes ---------------------

class FakeUpstream:
    """Answers the greeting and login, then runs ``script`` for the next command."""

    def __init__(self, on_command: dict[str, bytes | None]) -> None:
        self.on_command = on_command
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self) -> None:
        # One thread per connection (the gateway's start-up probe is a session too).
        for _ in range(8):
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            conn.sendall(b"220 fake\r\n")
            f = conn.makefile("rb")
            for raw in f:
                cmd = raw.decode().strip().split(" ")[0].upper()
                self.seen.append(raw.decode().strip())
                if cmd in self.on_command:
                    out = self.on_command[cmd]
                    if out is None:
                        return
                    conn.sendall(out)
                    if not out.endswith(b"\r\n"):
                        return  # closed in the middle of a reply
                else:
                    conn.sendall({"USER": b"331 pw\r\n", "PASS": b"230 in\r\n",
                                  "QUIT": b"221 bye\r\n"}.get(cmd, b"200 ok\r\n"))

    def close(self) -> None:
        self.sock.close()


def test_malformed_227_from_upstream() -> None:
    fake = FakeUpstream({"PASV": b"227 Entering Passive Mode (1,2,3,4)\r\n",
                         "EPSV": b"229 Entering Extended Passive Mode (|||99999|)\r\n"})
    try:
        with gateway(("127.0.0.1", fake.port)) as gw:
            c = Ctl(gw.host, gw.port)
            c.reply()
            c.send(b"USER a\r\nPASS b\r\n")
            c.reply()
            c.reply()
            c.send(b"PASV\r\n")
            r = c.reply()[0]
            assert r.startswith("425") and "malformed" in r and "PASV" in r, r
            c.send(b"EPSV\r\n")
            r = c.reply()[0]
            assert r.startswith("425") and "malformed" in r, r
            c.send(b"NOOP\r\n")
            assert c.reply()[0].startswith("200")  # the session survives
            c.close()
            assert "malformed PASV reply" in gw.log_text()
    finally:
        fake.close()


def test_upstream_closes_mid_reply() -> None:
    fake = FakeUpstream({"SYST": b"215-UNIX\r\n part of a"})
    try:
        with gateway(("127.0.0.1", fake.port)) as gw:
            c = Ctl(gw.host, gw.port)
            c.reply()
            c.send(b"SYST\r\n")
            r = c.reply()
            assert r[0].startswith("421") and "middle of a reply" in r[0], r
            with pytest.raises(EOFError):
                c.line()
            c.close()
    finally:
        fake.close()


def test_upstream_unreachable() -> None:
    port = free_port()
    with gateway(("127.0.0.1", port)) as gw:
        c = Ctl(gw.host, gw.port)
        r = c.reply()[0]
        assert r.startswith("421") and f"port {port}" in r, r
        c.close()


def test_line_too_long_is_refused_and_session_continues(
        wrong_pasv: tuple[Peer, GW, str]) -> None:
    _, gw, _ = wrong_pasv
    c = Ctl(gw.host, gw.port)
    try:
        c.reply()
        c.send(b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n")
        r = c.reply()[0]
        assert r.startswith("500") and "too long" in r, r
        assert c.reply()[0].startswith("200")
    finally:
        c.close()


def test_ftps_upstream_with_session_reuse(tmp_path_factory: pytest.TempPathFactory) -> None:
    """--upstream-tls in front of vsftpd forcing TLS on logins and data (and, by default,
    requiring the data connections to resume the control connection's TLS session): a
    plain client and an FTPS client both work, in both modes."""
    from natftp.tls import self_signed

    certdir = tmp_path_factory.mktemp("vsftpd-cert")
    cert, key = self_signed(certdir)
    extra = ["ssl_enable=YES", f"rsa_cert_file={cert}", f"rsa_private_key_file={key}",
             "ssl_ciphers=HIGH", "force_local_logins_ssl=YES", "force_local_data_ssl=YES",
             "require_ssl_reuse=YES"]
    with vsftpd(extra=extra) as peer:
        put_download(peer.root)
        f = ftplib.FTP()  # the premise: vsftpd refuses a plain login
        f.connect(peer.host, peer.port, timeout=5)
        with pytest.raises(ftplib.error_perm, match="530"):
            f.login(peer.user, peer.password)
        f.close()
        with gateway((peer.host, peer.port), args=["--upstream-tls"]) as gw:
            _ftplib_roundtrip(gw.host, gw.port, peer, passive=True, tag="uptls-p")
            _ftplib_roundtrip(gw.host, gw.port, peer, passive=False, tag="uptls-a")
            _ftplib_roundtrip(gw.host, gw.port, peer, passive=True, tag="uptls-tls",
                              tls=True)
            assert "FTPS upstream" in gw.log_text()


def test_abort_during_download_keeps_session_usable(wrong_pasv: tuple[Peer, GW, str]) -> None:
    """ftplib's abort() sends ABOR as urgent data mid-transfer; the gateway stops the relay,
    passes the server's replies on in order, and the session goes on."""
    peer, gw, _ = wrong_pasv
    (peer.root / "big.bin").write_bytes(b"\0" * (64 << 20))
    f = ftplib.FTP()
    f.connect(gw.host, gw.port, timeout=8)
    try:
        f.login(peer.user, peer.password)
        conn = f.transfercmd("RETR big.bin")
        assert conn.recv(65536)
        r = f.abort()
        if r.startswith("426"):  # the RETR's reply; the ABOR's own follows
            r = f.getresp()
        assert r[:3] in ("225", "226"), r
        conn.close()
        assert f.sendcmd("NOOP").startswith("200")
        assert "down.bin" in f.nlst()
        f.quit()
    finally:
        f.close()
        (peer.root / "big.bin").unlink()
