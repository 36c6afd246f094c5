"""Issue 20, running natftp as a service: Prometheus metrics (parsed by prometheus_client's
own parsers), the status page (rendered by headless Chromium during a transfer), the
NOTIFY_SOCKET protocol, SIGHUP reload of the whole configuration, the systemd unit
(systemd-analyze verify) and the example configuration."""

from __future__ import annotations

import dataclasses
import ftplib
import html.parser
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from opstools import http_get, samples, status_port, value
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from natftp.server.config import ConfigError, from_dict, load

from support.servertools import PASSWORD, USER, Running, free_port_range, wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "natftp.example.toml"
UNIT = REPO / "contrib" / "systemd" / "natftp.service"


def login(r: Running, user: str = USER, password: str = PASSWORD) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=20)
    ftp.connect("127.0.0.1", r.port)
    ftp.login(user, password)
    return ftp


# -- metrics ---------------------------------------------------------------------------

def test_metrics_count_what_happened_in_prometheus_formats(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    low, high = free_port_range(4)
    certs = tmp_path / "state"
    r = natftp_server(args=["--status-listen", "127.0.0.1:0", "--passive-ports",
                            f"{low}-{high}", "--tls", "--state-dir", str(certs),
                            "--masquerade", "203.0.113.7"])
    port = status_port(r)
    (r.root / "a.bin").write_bytes(os.urandom(50_000))
    ftp = login(r)
    buf = io.BytesIO()
    ftp.retrbinary("RETR a.bin", buf.write)
    ftp.storbinary("STOR up.bin", io.BytesIO(b"x" * 12_345))
    ftp.retrlines("LIST", lambda line: None)
    with pytest.raises(ftplib.error_perm, match="bounce"):
        ftp.sendcmd("PORT 10,9,9,9,200,10")
    with pytest.raises(ftplib.error_perm, match="550"):
        ftp.sendcmd("CWD a/../../etc")
    ftp.sendcmd("EPSV")  # one passive port held until the session ends
    bad = ftplib.FTP(timeout=20)
    bad.connect("127.0.0.1", r.port)
    with pytest.raises(ftplib.error_perm, match="530"):
        bad.login(USER, "wrong")
    bad.close()
    # a TLS session whose data connection resumes the control connection's session
    out = subprocess.run(["curl", "-sS", "--ssl-reqd", "-k", "--max-time", "30",
                          r.url("a.bin")], capture_output=True, timeout=60)
    assert out.returncode == 0 and len(out.stdout) == 50_000, out.stderr

    code, ctype, text = http_get(port, "/metrics")
    assert code == 200 and ctype.startswith("text/plain"), ctype
    # curl's session ends (its ports given back) a moment after curl exits
    wait_for(lambda: value(samples(http_get(port, "/metrics")[2]),
                           "natftp_passive_ports_in_use") == 1, "curl's session to end")
    got = samples(http_get(port, "/metrics")[2])
    assert value(got, "natftp_build_info", loop="uvloop",
                 python=sys.version.split()[0], version="0.1.0") == 1
    assert value(got, "natftp_sessions_open") >= 1
    assert value(got, "natftp_sessions_logged_in") >= 1
    assert value(got, "natftp_logins_total", result="ok") == 2
    assert value(got, "natftp_logins_total", result="failed") == 1
    assert value(got, "natftp_transfers_total", direction="download", result="ok") == 2
    assert value(got, "natftp_transfers_total", direction="upload", result="ok") == 1
    assert value(got, "natftp_transfers_total", direction="listing", result="ok") == 1
    assert value(got, "natftp_transfer_bytes_total", direction="download",
                 result="ok") == 100_000
    assert value(got, "natftp_transfer_bytes_total", direction="upload",
                 result="ok") == 12_345
    assert value(got, "natftp_transfer_duration_seconds_count", direction="download") == 2
    assert value(got, "natftp_transfer_duration_seconds_bucket", direction="download",
                 le="+Inf") == 2
    assert value(got, "natftp_refusals_total", reason="bounce") == 1
    assert value(got, "natftp_refusals_total", reason="path_escape") == 1
    assert value(got, "natftp_passive_ports_in_use") == 1
    assert value(got, "natftp_passive_ports_free") == 3
    assert value(got, "natftp_tls_handshakes_total", channel="control", result="new") == 1
    assert value(got, "natftp_tls_handshakes_total", channel="data", result="resumed") == 1
    assert value(got, "natftp_nat_public_address_info", address="203.0.113.7",
                 source="config") == 1
    assert value(got, "process_resident_memory_bytes") > 1 << 20
    ftp.quit()
    # ended by QUIT: the fixture's banner check, ftplib, curl; closed without: `bad`
    wait_for(lambda: value(samples(http_get(port, "/metrics")[2]), "natftp_sessions_total",
                           result="quit") == 3, "the QUIT sessions to be counted")
    assert value(samples(http_get(port, "/metrics")[2]), "natftp_sessions_total",
                 result="closed") == 1

    # the OpenMetrics form, for a scraper that asks for it (Prometheus does)
    code, ctype, text = http_get(port, "/metrics", accept="application/openmetrics-text; "
                                                          "version=1.0.0")
    assert ctype.startswith("application/openmetrics-text"), ctype
    fams = {f.name: f for f in openmetrics_families(text)}
    assert fams["natftp_transfers"].type == "counter"
    assert fams["natftp_transfer_duration_seconds"].type == "histogram"
    assert fams["natftp_sessions_open"].type == "gauge"


def test_status_and_metrics_modules_are_not_imported_unless_configured(
        tmp_path: Path) -> None:
    """Issue 22's idle footprint: prometheus_client, the HTTP listener and the JSON
    formatter load only when [status] listen or log.format = "json" asks for them."""
    script = f"""
import asyncio, sys
from natftp.server.app import Server
from natftp.server.config import from_dict
async def main(status):
    cfg = from_dict({{"root": {str(tmp_path)!r}, "listen": ["127.0.0.1:0"],
                     "status": {{"listen": status}}}})
    s = Server(cfg)
    await s.start()
    mods = [m for m in ("prometheus_client", "natftp.server.status", "pythonjsonlogger")
            if m in sys.modules]
    await s.stop()
    return mods
print(asyncio.run(main(sys.argv[1])))
"""
    off = subprocess.run([sys.executable, "-c", script, "off"], capture_output=True,
                         text=True, timeout=60)
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == "[]"
    on = subprocess.run([sys.executable, "-c", script, "127.0.0.1:0"], capture_output=True,
                        text=True, timeout=60)
    assert on.returncode == 0, on.stderr
    assert "prometheus_client" in on.stdout and "natftp.server.status" in on.stdout


@pytest.mark.parametrize(("value", "why"), [
    ("localhost:9121", "not an IP address"),
    ("127.0.0.1:99999", "not 0-65535"),
    ("abc", "neither [HOST:]PORT nor off"),
])
def test_status_listen_errors_name_the_key(tmp_path: Path, value: str, why: str) -> None:
    with pytest.raises(ConfigError) as ei:
        from_dict({"root": str(tmp_path), "status": {"listen": value}})
    assert "status.listen" in str(ei.value) and why in str(ei.value)
    with pytest.raises(ConfigError, match="status.listen.*also an FTP listen address"):
        from_dict({"root": str(tmp_path), "listen": ["127.0.0.1:2121"],
                   "status": {"listen": "127.0.0.1:2121"}})
    # a bare port is loopback
    cfg = from_dict({"root": str(tmp_path), "status": {"listen": "9121"}})
    assert cfg.status.listen is not None and cfg.status.listen.host == "127.0.0.1"


def test_status_listener_answers_bad_requests_with_4xx(
        natftp_server: Callable[..., Running]) -> None:
    r = natftp_server(args=["--status-listen", "0.0.0.0:0", "--masquerade", "off"])
    port = status_port(r)
    assert http_get(port, "/nope")[0] == 404

    def raw(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(data)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out
    assert raw(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert raw(b"hello there\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw(b"GET / HTTP/1.1\r\nX: " + b"a" * 8200).startswith(b"HTTP/1.1 431 ")
    head = raw(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    # beyond loopback the log says what is exposed
    assert "status page and metrics on 0.0.0.0" in r.log and "beyond loopback" in r.log
    # and the page lists it under its recent warnings
    page = http_get(port)[2]
    assert re.search(r'<tr class="warning">.*WARNING.*beyond loopback', page), page
    assert r.proc.poll() is None


# -- the status page, in a real browser --------------------------------------------------

class _Dom(html.parser.HTMLParser):
    """The rows of the page's tables: (class, attributes, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, dict[str, str], str]] = []
        self._row: tuple[str, dict[str, str], list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            a = {k: v or "" for k, v in attrs}
            self._row = (a.get("class", ""), a, [])

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row[2].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            cls, attrs, text = self._row
            self.rows.append((cls, attrs, " ".join(" ".join(text).split())))
            self._row = None


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("chromium")
    assert exe, "chromium is missing: run scripts/setup-system.sh"
    profile = tmp / f"chromium-profile-{time.monotonic_ns()}"
    profile.mkdir()
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", *args],
        capture_output=True, timeout=120)


def test_status_page_in_chromium_shows_the_transfer_and_the_nat_decision(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    r = natftp_server(args=["--status-listen", "127.0.0.1:0", "--masquerade", "203.0.113.7"])
    port = status_port(r)
    url = f"http://127.0.0.1:{port}/"
    ftp = login(r)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR held.bin")  # an upload that stays open
    conn.sendall(b"z" * 100_000)
    wait_for(lambda: re.search(r"STOR /held\.bin: [\d.]+ KiB", http_get(port)[2]),
             "the upload to show on the page")
    try:
        dom = chromium(tmp_path, "--dump-dom", url)
        assert dom.returncode == 0, dom.stderr[-2000:]
        shot = tmp_path / "status.png"
        pic = chromium(tmp_path, "--window-size=1280,1000", f"--screenshot={shot}", url)
        assert pic.returncode == 0, pic.stderr[-2000:]
    finally:
        conn.close()
        ftp.voidresp()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    page = _Dom()
    page.feed(dom.stdout.decode())
    sessions = [(a, t) for c, a, t in page.rows if c == "session"]
    mine = [(a, t) for a, t in sessions if a.get("data-user") == USER]
    assert len(mine) == 1, sessions
    attrs, text = mine[0]
    assert attrs["data-client"] == "127.0.0.1"
    assert "STOR /held.bin" in text and "KiB" in text, text
    nat = {(a["data-class"], a["data-told"]): t for c, a, t in page.rows if c == "nat"}
    assert ("public client", "203.0.113.7") in nat, nat
    assert "masquerade" in nat[("public client", "203.0.113.7")]
    assert ("loopback client", "127.0.0.1") in nat
    assert "nat.masquerade = 203.0.113.7" in dom.stdout.decode()
    ftp.quit()


# -- NOTIFY_SOCKET ------------------------------------------------------------------------

class NotifyListener:
    """What systemd does for Type=notify: a datagram socket, NOTIFY_SOCKET=path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(60)  # a start on a loaded machine can take long

    def next(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines() if line)

    def close(self) -> None:
        self.sock.close()


def test_notify_ready_only_once_listening_then_reloading_and_stopping(
        tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    root = tmp_path / "root"
    root.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "natftp", "serve", str(root), "--listen", "127.0.0.1:0",
         "--user", "alice:pw", "--status-listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "NOTIFY_SOCKET": str(listener.path)})
    try:
        msg = listener.next()
        assert msg.get("READY") == "1", msg
        assert msg["MAINPID"] == str(proc.pid)
        ftp_port = int(re.findall(r"serving on 127\.0\.0\.1:(\d+)", msg["STATUS"])[0])
        # READY=1 came after the bind: both listeners accept at this very moment
        with socket.create_connection(("127.0.0.1", ftp_port), timeout=5) as s:
            assert s.recv(100).startswith(b"220")
        proc.send_signal(signal.SIGHUP)
        assert listener.next().get("RELOADING") == "1"
        again = listener.next()
        assert again.get("READY") == "1" and "serving on" in again["STATUS"]
        proc.send_signal(signal.SIGTERM)
        bye = listener.next()
        assert bye.get("STOPPING") == "1", bye
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()


def test_notify_never_ready_when_the_port_is_taken_and_a_dead_socket_is_harmless(
        tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    root = tmp_path / "root"
    root.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "natftp", "serve", str(root), "--listen",
                            f"127.0.0.1:{busy}", "--user", "a:b"], capture_output=True,
                           text=True, timeout=60,
                           env={**os.environ, "NOTIFY_SOCKET": str(listener.path)})
    assert r.returncode == 1 and "cannot listen" in r.stderr
    listener.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        listener.next()
    listener.close()
    # NOTIFY_SOCKET naming nothing: one warning, and the server serves
    log = tmp_path / "out.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "natftp", "serve", str(root),
                                 "--listen", "127.0.0.1:0", "--user", "a:b"], stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "none")})
    try:
        wait_for(lambda: "cannot notify systemd" in log.read_text(), "the warning")
        port = int(re.findall(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert s.recv(100).startswith(b"220")
        assert log.read_text().count("cannot notify systemd") == 1
    finally:
        proc.kill()
        proc.wait()


# -- SIGHUP reload ---------------------------------------------------------------------------

HASHER = PasswordHasher()


def _config(root: Path, users: dict[str, tuple[str, bool]], *, extra: str = "",
            listen: str = "127.0.0.1:0") -> str:
    text = f'root = "{root}"\nlisten = ["{listen}"]\n{extra}\n'
    for name, (pw, write) in users.items():
        text += (f'[[users]]\nname = "{name}"\npassword_hash = "{HASHER.hash(pw)}"\n'
                 f"permissions = {{ write = {'true' if write else 'false'} }}\n")
    return text


def test_sighup_applies_users_permissions_limits_policy_and_log_level(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    cfg = tmp_path / "natftp.toml"
    cfg.write_text(_config(root, {"alice": ("old-pw", True)}))
    r = natftp_server(users=False, args=["--config", str(cfg)], root=root)
    kept = login(r, "alice", "old-pw")  # logged in before the reload

    def reloaded(n: int) -> None:
        r.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: r.log.count("SIGHUP: configuration") >= n, "the reload line")

    cfg.write_text(_config(root, {"alice": ("new-pw", False), "bob": ("bob-pw", True)},
                           extra='log_level = "debug"\n[limits]\nmax_login_attempts = 1\n'
                                 '[nat]\noverrides = [{ networks = ["127.0.0.0/8"], '
                                 'address = "192.0.2.1" }]\n'))
    reloaded(1)
    assert "SIGHUP: configuration reloaded (" in r.log
    line = [x for x in r.log.splitlines() if "configuration reloaded" in x][0]
    assert "users +bob ~alice" in line and "limits.max_login_attempts" in line
    assert "new-pw" not in r.log and "old-pw" not in r.log
    # the session from before keeps going, with the permissions it logged in with
    kept.storbinary("STOR before.txt", io.BytesIO(b"kept"))
    assert (root / "before.txt").read_bytes() == b"kept"
    # new logins: new passwords (and limits: one failed attempt now ends the session),
    # new users, new permissions
    with pytest.raises(ftplib.error_temp, match=r"421 .*limits\.max_login_attempts"):
        login(r, "alice", "old-pw")
    fresh = login(r, "alice", "new-pw")
    with pytest.raises(ftplib.error_perm, match=r"permissions\.write = false"):
        fresh.storbinary("STOR no.txt", io.BytesIO(b"x"))
    login(r, "bob", "bob-pw").quit()
    # the override for loopback clients now wins in PASV
    assert "192,0,2,1" in fresh.sendcmd("PASV")
    # log level debug: commands are logged (the password masked)
    fresh.sendcmd("NOOP")
    wait_for(lambda: "<- NOOP" in r.log, "a debug line")
    fresh.quit()
    kept.quit()


def test_sighup_refuses_a_bad_file_or_a_restart_key_and_keeps_the_old_configuration(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    cfg = tmp_path / "natftp.toml"
    # in the file, not as flags: a flag would win over the file at reload too
    good = _config(root, {"alice": ("pw", True)}, extra='[status]\nlisten = "127.0.0.1:0"')
    cfg.write_text(good)
    r = natftp_server(users=False, args=["--config", str(cfg)], root=root)
    port = status_port(r)
    n = 0

    def refused(text: str) -> str:
        nonlocal n
        cfg.write_text(text)
        r.proc.send_signal(signal.SIGHUP)
        n += 1
        wait_for(lambda: r.log.count("SIGHUP: configuration not reloaded") >= n,
                 "the refusal")
        return [x for x in r.log.splitlines() if "not reloaded" in x][-1]

    assert "not valid TOML" in refused(good + "[limits\n")
    assert "users[0].permissions.wirte" in refused(good.replace("write =", "wirte ="))
    low, high = free_port_range(2)
    line = refused(good + f'[passive]\nports = "{low}-{high}"\n')
    assert f"need a restart: passive.ports: (not set) -> {low}-{high}" in line
    line = refused(good.replace('listen = "127.0.0.1:0"', 'listen = "off"'))
    assert "status.listen: 127.0.0.1:0 -> (not set)" in line
    # the running configuration is the old one: alice logs in with her password
    login(r, "alice", "pw").quit()
    got = samples(http_get(port, "/metrics")[2])
    assert value(got, "natftp_config_reloads_total", result="failed") == 4
    assert value(got, "natftp_config_reloads_total", result="ok") == 0
    assert r.proc.poll() is None


def test_reload_keeps_the_masquerade_policy_object_and_applies_a_new_address(
        tmp_path: Path) -> None:
    """In process: discovery holds the policy object, so a reload changes it in place."""
    import asyncio

    from natftp.proto.addr import IPAddress, ip
    from natftp.server.app import ReloadRefused, Server

    async def resolve(host: str) -> list[IPAddress]:  # DNS stands in; no query leaves
        if host == "ftp.example.net":
            return [ip("198.51.100.44")]
        raise OSError(2, "Name or service not known")

    async def main() -> None:
        base = {"root": str(tmp_path), "listen": ["127.0.0.1:0"]}
        server = Server(from_dict({**base, "nat": {"masquerade": "203.0.113.7"}}),
                        resolve=resolve)
        await server.start()
        policy = server.policy
        try:
            await server.reload(from_dict({**base, "nat": {"masquerade": "198.51.100.9"}}))
            assert server.policy is policy
            assert [str(a) for a in policy.masquerade_addresses] == ["198.51.100.9"]
            d = policy.advertise("10.0.0.5", "198.51.100.200")
            assert str(d.address) == "198.51.100.9"
            # a hostname is resolved before it is used; one that resolves nowhere is
            # refused as at start, and the running address stays
            await server.reload(from_dict({**base, "nat": {"masquerade": "ftp.example.net"}}))
            assert [str(a) for a in policy.masquerade_addresses] == ["198.51.100.44"]
            with pytest.raises(ReloadRefused, match="nowhere.invalid.*does not resolve"):
                await server.reload(from_dict({**base,
                                               "nat": {"masquerade": "nowhere.invalid"}}))
            assert policy.masquerade == "ftp.example.net"
            await server.reload(from_dict({**base, "nat": {"masquerade": "off"}}))
            assert policy.masquerade_addresses == ()
            with pytest.raises(ReloadRefused, match="nat.masquerade"):
                await server.reload(from_dict({**base, "nat": {"masquerade": "auto"}}))
            with pytest.raises(ReloadRefused,
                               match=r"listen: \[127\.0\.0\.1:0\] -> \[127\.0\.0\.1:1\]"):
                await server.reload(from_dict({**base, "listen": ["127.0.0.1:1"]}))
        finally:
            await server.stop()

    asyncio.run(main())


def test_reload_keeps_cli_users_and_the_environment_overlay(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    cfg = tmp_path / "natftp.toml"
    cfg.write_text('banner = "from the file"\nread_only = false\n')
    # alice from --user; the banner from NATFTP_BANNER, which wins over the file
    r = natftp_server(args=["--config", str(cfg)], env={"NATFTP_BANNER": "from env"})
    cfg.write_text('banner = "from the file, changed"\nread_only = true\n')
    r.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in r.log, "the reload")
    line = [x for x in r.log.splitlines() if "configuration reloaded" in x][0]
    assert "read_only" in line and "banner" not in line, line
    ftp = ftplib.FTP(timeout=20)
    assert "from env" in ftp.connect("127.0.0.1", r.port)
    ftp.login(USER, PASSWORD)
    with pytest.raises(ftplib.error_perm, match="read_only = true"):
        ftp.storbinary("STOR x.bin", io.BytesIO(b"x"))
    ftp.quit()


# -- systemd unit, example configuration ---------------------------------------------------

def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    natftp = Path(sys.executable).parent / "natftp"
    assert natftp.exists(), natftp
    text = UNIT.read_text()
    assert "Type=notify" in text and "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" in text
    for opt in ("ProtectSystem=strict", "NoNewPrivileges=yes", "ExecReload=/bin/kill -HUP"):
        assert opt in text
    unit = tmp_path / "natftp.service"
    unit.write_text(text.replace("/usr/local/bin/natftp", str(natftp)))
    ok = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and not ok.stdout.strip() and not ok.stderr.strip(), (
        ok.stdout + ok.stderr)
    # the check is real: a typo in the unit is reported
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "natftp.service").write_text(unit.read_text().replace(
        "ProtectSystem=strict", "ProtectSystem=strcit"))
    bad = subprocess.run(["systemd-analyze", "verify", str(bad_dir / "natftp.service")],
                         capture_output=True, text=True, timeout=60)
    assert "protect system value, ignoring: strcit" in bad.stderr, bad.stderr


def _known_keys(tmp: Path) -> set[str]:
    """Every key the validator knows, from its own "unknown key" errors."""
    hasher_hash = HASHER.hash("x")
    tables: dict[str, dict[str, object]] = {
        "": {}, "passive.": {"passive": {}}, "anonymous.": {"anonymous": {}},
        "timeouts.": {"timeouts": {}}, "limits.": {"limits": {}}, "nat.": {"nat": {}},
        "active.": {"active": {}}, "tls.": {"tls": {}}, "status.": {"status": {}},
        "log.": {"log": {}}, "uploads.": {"uploads": {}},
        "proxy_protocol.": {"proxy_protocol": {}},
        "users.": {"users": [{"name": "u", "password_hash": hasher_hash}]},
        "users.permissions.": {"users": [{"name": "u", "password_hash": hasher_hash,
                                          "permissions": {}}]},
    }
    keys: set[str] = set()
    for prefix, data in tables.items():
        data = {k: (v if not isinstance(v, dict) else dict(v)) for k, v in data.items()}
        target: dict[str, object]
        if prefix == "":
            target = data
        elif prefix.startswith("users."):
            user = data["users"][0]  # type: ignore[index]
            target = user if prefix == "users." else user["permissions"]
        else:
            target = data[prefix[:-1]]  # type: ignore[assignment]
        target["qqqqqq"] = 1
        with pytest.raises(ConfigError) as ei:
            from_dict({"root": str(tmp), **data})
        known = re.findall(r"known keys here: ([^)]*)\)", str(ei.value))
        assert known, str(ei.value)
        keys |= {prefix + k.strip() for k in known[0].split(",")}
    return keys


def test_example_configuration_loads_and_names_every_key_at_its_default(
        tmp_path: Path) -> None:
    cfg = load(EXAMPLE)
    # the same configuration as none at all (``sources`` says where values came from)
    assert dataclasses.replace(cfg, root=tmp_path, sources=()) == dataclasses.replace(
        from_dict({}), root=tmp_path, sources=())
    text = EXAMPLE.read_text()
    section = ""
    mentioned: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"^#?\s*\[\[?([a-z_]+)\]\]?\s*$", line)
        if m:
            section = m.group(1) + "."
            mentioned.add(m.group(1))
            continue
        m = re.match(r"^#?\s*([a-z_]+)\s*=", line)
        if m:
            mentioned.add(section + m.group(1))
    # the users' permissions: one inline table, over two comment lines
    block = re.search(r"permissions = \{(.*?)\}", text, re.S)
    assert block is not None
    mentioned |= {f"users.permissions.{p}" for p in
                  re.findall(r"(\w+) = (?:true|false)", block.group(1))}
    missing = _known_keys(tmp_path) - mentioned
    assert not missing, f"docs/natftp.example.toml does not mention {sorted(missing)}"


# -- behind a load balancer (PROXY protocol, issue 18) ---------------------------------------

def test_status_page_and_xferlog_name_the_real_client_behind_a_balancer(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    from natftp.proto.proxy import encode_v1

    xfer = tmp_path / "xferlog"
    r = natftp_server(config='[proxy_protocol]\ntrusted = ["127.0.0.2"]\n'
                             f'[status]\nlisten = "127.0.0.1:0"\n[log]\nxferlog = "{xfer}"\n')
    port = status_port(r)
    (r.root / "b.bin").write_bytes(b"b" * 777)
    s = socket.create_connection(("127.0.0.1", r.port), timeout=20,
                                 source_address=("127.0.0.2", 0))
    f = s.makefile("rb", buffering=0)

    def cmd(line: str) -> str:
        if line:
            s.sendall(line.encode() + b"\r\n")
        return f.readline().decode().strip()

    s.sendall(encode_v1(("198.51.100.7", 40000), ("127.0.0.1", r.port)))
    assert cmd("").startswith("220")
    assert cmd(f"USER {USER}").startswith("331")
    assert cmd(f"PASS {PASSWORD}").startswith("230")
    page = _Dom()
    page.feed(http_get(port)[2])
    rows = [(a, t) for c, a, t in page.rows if c == "session"]
    assert len(rows) == 1 and rows[0][0]["data-client"] == "198.51.100.7", rows
    assert "198.51.100.7 port 40000 via 127.0.0.2" in rows[0][1]
    # a download through the balancer (its data connection without a header)
    assert cmd("TYPE I").startswith("200")
    epsv = cmd("EPSV")
    dport = int(re.findall(r"\|\|\|(\d+)\|", epsv)[0])
    d = socket.create_connection(("127.0.0.1", dport), timeout=20,
                                 source_address=("127.0.0.2", 0))
    assert cmd("RETR b.bin")[:3] in ("150", "125")
    got = b""
    while chunk := d.recv(65536):
        got += chunk
    d.close()
    assert got == b"b" * 777 and cmd("").startswith("226")
    wait_for(lambda: xfer.exists() and xfer.read_text(), "the xferlog line")
    assert " 198.51.100.7 777 " in xfer.read_text()
    cmd("QUIT")
    s.close()
