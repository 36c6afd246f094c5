"""What clients are told: dual-stack PASV, IPv6 refusal, overrides, advertised ports,
the passive pool (exhaustion and release), masquerade re-resolution and --explain."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from natftp.proto.addr import ip, parse_227, parse_229
from natftp.server import config as cfgmod
from natftp.server.app import Server

from support.ftpraw import Ctl, recv_all
from support.servertools import Running, free_port_range


def nlst_over(c: Ctl, host: str, port: int) -> bytes:
    data = socket.create_connection((host, port), timeout=10)
    assert c.cmd("NLST").code in (125, 150)
    out = recv_all(data)
    assert c.read().code == 226
    return out


def test_dual_stack_pasv_over_ipv4_says_127_0_0_1_never_0_0_0_0(
        natftp_server: Callable[..., Running]) -> None:
    # beyond loopback in the root namespace: no zero-config discovery onto the host's LAN
    r = natftp_server(host="::", args=["--masquerade", "off"])
    assert "(IPv4 and IPv6)" in r.log
    (r.root / "f").write_text("x")
    with Ctl("127.0.0.1", r.port) as c:
        c.login(r.user, r.password)
        reply = c.cmd("PASV")
        assert reply.code == 227
        assert "(127,0,0,1," in reply.text and "0,0,0,0" not in reply.text
        host, port = parse_227(reply.text)
        assert nlst_over(c, str(host), port) == b"f\r\n"
        reply = c.cmd("EPSV")
        assert nlst_over(c, "127.0.0.1", parse_229(reply.text)) == b"f\r\n"
    with Ctl("::1", r.port) as c:
        c.login(r.user, r.password)
        reply = c.cmd("PASV")
        assert reply.code == 425 and "use EPSV" in reply.text and "IPv6" in reply.text
        reply = c.cmd("EPSV 1")
        assert reply.code == 522 and "(2)" in reply.text
        reply = c.cmd("EPSV 2")
        assert nlst_over(c, "::1", parse_229(reply.text)) == b"f\r\n"


def test_v4_and_v6_any_on_one_port_makes_the_v6_socket_v6_only(
        natftp_server: Callable[..., Running]) -> None:
    port = free_port_range(1)[0]
    r = natftp_server(listen=[f"0.0.0.0:{port}", f"[::]:{port}"],
                      args=["--masquerade", "off"])
    assert f"0.0.0.0:{port} (IPv4)" in r.log
    assert f"[::]:{port} (IPv6 only)" in r.log
    for host in ("127.0.0.1", "::1"):
        with Ctl(host, port) as c:
            c.login(r.user, r.password)
            assert nlst_over(c, host, parse_229(c.cmd("EPSV").text)) == b""


def test_override_is_what_a_matching_client_is_told(natftp_server: Callable[..., Running]
                                                    ) -> None:
    r = natftp_server(config='[nat]\nmasquerade = "198.51.100.1"\noverrides = '
                             '[{networks = ["127.0.0.0/8"], address = "203.0.113.9"}]\n')
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        reply = c.cmd("PASV")
        assert "(203,0,113,9," in reply.text


def test_masquerade_is_not_told_to_loopback_clients(natftp_server: Callable[..., Running]
                                                    ) -> None:
    r = natftp_server(args=["--masquerade", "198.51.100.1"])
    with Ctl(r.host, r.port) as c:
        c.login(r.user, r.password)
        assert "(127,0,0,1," in c.cmd("PASV").text


def test_advertised_ports_map_the_passive_range_one_to_one(
        natftp_server: Callable[..., Running]) -> None:
    low, high = free_port_range(3)
    r = natftp_server(args=["--passive-ports", f"{low}-{high}"],
                      config='[nat]\nadvertised_ports = "31000-31002"\n')
    (r.root / "f").write_text("x")
    seen = []
    for cmds in (("PASV", "EPSV"), ("EPSV", "PASV"), ("PASV",), ("EPSV",)):
        with Ctl(r.host, r.port) as c:
            c.login(r.user, r.password)
            mine = set()
            for cmd in cmds:
                reply = c.cmd(cmd)
                adv = parse_227(reply.text)[1] if cmd == "PASV" else parse_229(reply.text)
                assert 31000 <= adv <= 31002, reply
                mine.add(adv)
                # the NAT in front would forward adv -> low + (adv - 31000); by hand
                assert nlst_over(c, "127.0.0.1", low + adv - 31000) == b"f\r\n"
            # a session's next PASV/EPSV offers its kept listening socket again
            assert len(mine) == 1
            seen += mine
    assert len(set(seen[:3])) == 3  # round-robin over the range, session by session


def test_pool_exhaustion_gives_425_naming_the_range_and_ports_come_back(
        natftp_server: Callable[..., Running]) -> None:
    low, high = free_port_range(2)
    r = natftp_server(args=["--passive-ports", f"{low}-{high}"],
                      config="[timeouts]\ndata = 1.5\n")
    a, b, c = (Ctl(r.host, r.port) for _ in range(3))
    try:
        for x in (a, b, c):
            x.login(r.user, r.password)
        assert a.cmd("PASV").code == 227
        assert b.cmd("EPSV").code == 229
        reply = c.cmd("PASV")
        assert reply.code == 425
        assert f"{low}-{high}" in reply.text and "passive.ports" in reply.text
        assert "no free passive port" in r.log
        a.close()  # session end releases its port
        time.sleep(0.3)
        reply = c.cmd("EPSV")
        assert reply.code == 229, reply
        # b never connects: after timeouts.data its port is released too
        time.sleep(2)
        d = Ctl(r.host, r.port)
        d.login(r.user, r.password)
        assert d.cmd("EPSV").code == 229
        d.close()
        r2 = b.cmd("NLST")
        assert r2.code == 425 and "timeouts.data" in r2.text
    finally:
        for x in (a, b, c):
            x.close()


def test_epsv_all_refuses_other_data_commands(server: Running) -> None:
    with Ctl(server.host, server.port) as c:
        c.login(server.user, server.password)
        assert c.cmd("EPSV ALL").code == 200
        assert c.cmd("PASV").code == 503
        assert c.cmd("PORT 127,0,0,1,200,1").code == 503
        assert c.cmd("EPRT |1|127.0.0.1|5000|").code == 503
        assert c.cmd("EPSV").code == 229


def test_explain_prints_each_client_class_and_the_warning(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "natftp", "serve", str(tmp_path),
                        "--listen", "172.16.0.2:21", "--explain", "--masquerade", "off",
                        "--config",
                        str(_write(tmp_path, '[nat]\noverrides = [{networks = '
                                   '["10.8.0.0/16"], address = "10.8.0.1"}]\n'))],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "loopback client 127.0.0.1" in out
    assert "public client 198.51.100.77 (reaches us at 172.16.0.2): told 172.16.0.2" in out
    assert "WARNING" in out and "nat.masquerade" in out
    assert "client in override 10.8.0.0/16 10.8.0.1" in out and "told 10.8.0.1" in out
    p = subprocess.run([sys.executable, "-m", "natftp", "serve", str(tmp_path),
                        "--listen", "172.16.0.2:21", "--explain", "--masquerade",
                        "203.0.113.5"], capture_output=True, text=True, timeout=30)
    assert "public client 198.51.100.77 (reaches us at 172.16.0.2): told 203.0.113.5" \
        in p.stdout
    assert "WARNING" not in p.stdout


def test_explain_with_masquerade_auto_runs_one_discovery_round(tmp_path: Path) -> None:
    """Beyond loopback with no address set, --explain runs the discovery round serving
    would run and shows what it found. Here, in a namespace of its own with nothing but
    lo (no packet can leave it), nothing answers: it says what was tried and warns that
    public clients get the local address."""
    import uuid

    ns = f"zx-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=20)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
                       check=True, timeout=20)
        p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "natftp",
                            "serve", str(tmp_path), "--listen", "172.16.0.2:21",
                            "--explain", "--discover"], capture_output=True, text=True,
                           timeout=30)
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=20)
    assert p.returncode == 0, p.stderr
    assert "masquerade: auto (the default when serving beyond loopback)" in p.stdout
    assert "upnp, natpmp, pcp, metadata, stun within 3 s" in p.stdout
    found = next(ln for ln in p.stdout.splitlines() if ln.startswith("discovery, asked now"))
    assert "no source told the public address" in found and "natpmp: no IPv4 default " \
        "gateway" in found and "stun: no servers configured (nat.stun_servers)" in found
    public = next(ln for ln in p.stdout.splitlines() if "public client 198.51.100.77" in ln)
    assert "told 172.16.0.2" in public and "WARNING" in public and "nat.masquerade" in public


def _write(tmp: Path, text: str) -> Path:
    f = tmp / "c.toml"
    f.write_text(text)
    return f


def test_unreachable_warning_once_per_client_network(tmp_path: Path) -> None:
    """The S2 trap warning, driven in-process (tests cannot have a public peer)."""
    import logging

    records: list[str] = []

    class H(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            records.append(rec.getMessage())

    h = H()
    logging.getLogger("natftp.server").addHandler(h)
    try:
        srv = Server(cfgmod.from_dict({"root": str(tmp_path)}))
        srv.warn_unreachable(ip("198.51.100.9"), ip("172.16.0.2"))
        srv.warn_unreachable(ip("198.51.100.10"), ip("172.16.0.2"))
        srv.warn_unreachable(ip("203.0.113.1"), ip("172.16.0.2"))
    finally:
        logging.getLogger("natftp.server").removeHandler(h)
    assert len(records) == 2
    assert "198.51.100.0/24" in records[0] and "nat.masquerade" in records[0]
    assert "--masquerade" in records[0]


def test_masquerade_hostname_is_re_resolved_while_running(tmp_path: Path) -> None:
    answers = [ip("203.0.113.1")]

    async def fake(host: str) -> list:  # type: ignore[type-arg]
        assert host == "home.example.net"
        return list(answers)

    async def main() -> None:
        cfg = cfgmod.from_dict({"root": str(tmp_path), "listen": ["127.0.0.1:0"],
                                "nat": {"masquerade": "home.example.net",
                                        "refresh_interval": 0.1}})
        srv = Server(cfg, resolve=fake)
        await srv.start()
        try:
            told = srv.policy.advertise("172.16.0.2", "198.51.100.9").address
            assert told == ip("203.0.113.1")
            answers[0] = ip("203.0.113.2")
            await asyncio.sleep(0.4)
            told = srv.policy.advertise("172.16.0.2", "198.51.100.9").address
            assert told == ip("203.0.113.2")
        finally:
            await srv.stop()

    asyncio.run(main())


def test_kept_passive_socket_drains_strays_and_is_reclaimed_when_the_pool_is_empty(
        natftp_server: Callable[..., Running]) -> None:
    """A session's listening socket is kept between transfers: a connection that came to
    it in between is closed (not taken for the next transfer), and another session gets
    the port back when the pool has none free."""
    low, _ = free_port_range(1)
    r = natftp_server(args=["--passive-ports", f"{low}-{low}"])
    (r.root / "f").write_text("x")
    with Ctl(r.host, r.port) as a, Ctl(r.host, r.port) as b:
        a.login(r.user, r.password)
        b.login(r.user, r.password)
        assert parse_229(a.cmd("EPSV").text) == low
        assert nlst_over(a, "127.0.0.1", low) == b"f\r\n"
        stray = socket.create_connection(("127.0.0.1", low), timeout=5)
        try:
            assert parse_229(a.cmd("EPSV").text) == low
            stray.settimeout(5)
            assert stray.recv(10) == b""  # closed, never used for data
            assert nlst_over(a, "127.0.0.1", low) == b"f\r\n"
        finally:
            stray.close()
        assert "between transfers" in r.log
        reply = b.cmd("EPSV")  # a holds the only port, as its kept socket
        assert reply.code == 229 and parse_229(reply.text) == low, reply
        assert nlst_over(b, "127.0.0.1", low) == b"f\r\n"
        reply = a.cmd("EPSV")  # now b keeps it: a takes it back in turn
        assert reply.code == 229, reply
        assert nlst_over(a, "127.0.0.1", low) == b"f\r\n"
