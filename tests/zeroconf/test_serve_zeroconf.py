"""``natftp serve`` with zero-config NAT against real daemons in namespaces (issue 8).

The server runs in the server namespace behind the lab router with **no address
configuration**; clients run in the "internet" namespace and dial the router's WAN
address. The router has no FTP helper and no port forward unless a test adds one to
read a control connection (``lab.forward``); the miniupnpd test adds none.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from zlab import (
    INET_IP,
    PASSWORD,
    ROUTER_WAN,
    SERVER_IP,
    USER,
    Lab,
    matrix_cells,
    pasv_host,
    sh,
    wait_log,
    wait_tcp,
    zlab,
)
from zlab import stop as _stop

from natftp.nat.discovery.mapping import ranges

pytestmark = pytest.mark.timeout(120)

PASSIVE = (30000, 30009)  # small: miniupnpd maps ~0.05 s per port here
CONTROL = 2121


@pytest.fixture(scope="module")
def igd() -> Iterator[Lab]:
    """This module's own miniupnpd router (the mapping tests leave it clean)."""
    with zlab() as lab:
        lab.start_stund()
        lab.start_miniupnpd()
        yield lab


def _stamp(text: str, pattern: str) -> datetime:
    for line in text.splitlines():
        if re.search(pattern, line):
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    raise AssertionError(f"no {pattern!r} in:\n{text}")


# -- UPnP IGD (miniupnpd): address and ports by themselves ------------------------------

def test_open_router_serves_every_client_from_the_internet_and_cleans_up(igd: Lab) -> None:
    assert "helper" not in sh("nft", "list", "ruleset", ns=igd.router).stdout
    assert igd.dnat_ports() == set()
    root = igd.root("srv-matrix")
    p = igd.serve(root, "--open-router", "--passive-ports", f"{PASSIVE[0]}-{PASSIVE[1]}")
    ports = {CONTROL, *range(PASSIVE[0], PASSIVE[1] + 1)}
    log = wait_log(igd, p, r"port mapping: port .*: mapped")
    assert f"public address {ROUTER_WAN} (from upnp, IGD http://172.16.0.1:" in log
    assert "the default when serving beyond loopback" in log
    assert f"port {ranges(ports)}: mapped (via upnp, lease 3600 s)" in log
    assert igd.dnat_ports() == ports
    assert pasv_host(igd.pasv(igd.inet, ROUTER_WAN)[0]) == ROUTER_WAN

    cells = matrix_cells(igd, root, client="inet", client_addr=INET_IP, target=ROUTER_WAN)
    bad = {name: c.detail for name, c in cells.items() if not c.ok}
    assert not bad, (bad, igd.serve_log(p)[-3000:])
    assert {"curl PASV trust", "ftplib PASV trust", "lftp", "curl EPSV"} <= set(cells)

    assert _stop(p) == 0
    assert igd.dnat_ports() == set()
    assert "miniupnpd" in igd.ruleset() and "dnat" not in igd.ruleset()
    log = igd.serve_log(p)
    assert f"removed {len(ports)} mapping(s) from UPnP IGD" in log
    assert f"port {ranges(ports)}: removed" in log


def test_wan_renumbering_reaches_the_next_pasv(igd: Lab) -> None:
    root = igd.root("srv-renumber")
    cfg = igd.config("[nat]\nrecheck_interval = 0.5\n")
    p = igd.serve(root, "--config", cfg, "--open-router", "--passive-ports", "30020-30021")
    try:
        wait_log(igd, p, r"port mapping: port .*: mapped")
        assert pasv_host(igd.pasv(igd.inet, ROUTER_WAN)[0]) == ROUTER_WAN
        new = "198.51.100.7"
        igd.set_wan(new)
        wait_log(igd, p, rf"public address changed to {new} \(was {ROUTER_WAN}; "
                          r"from upnp\)")
        assert pasv_host(igd.pasv(igd.inet, new)[0]) == new
    finally:
        assert _stop(p) == 0
        igd.set_wan(ROUTER_WAN)
        deadline = time.monotonic() + 10
        while igd.natftp_nat("discover", "--sources", "natpmp")["address"] != ROUTER_WAN:
            assert time.monotonic() < deadline, "miniupnpd did not get its WAN back"
            time.sleep(0.2)
    assert igd.dnat_ports() == set()


def test_refused_port_gets_the_manual_rules(igd: Lab) -> None:
    # this miniupnpd's policy allows 1024-65535 only: control port 1021 is refused
    root = igd.root("srv-refused")
    p = igd.serve(root, "--listen", "0.0.0.0:1021", "--open-router", "--passive-ports",
                  "30030-30031", port=1021)
    log = wait_log(igd, p, r"port mapping: port 30030-30031: mapped")
    assert re.search(r"WARNING natftp.nat port mapping: port 1021: refused \(router "
                     r"refused: UPnP error 606 .*natftp firewall --router WAN_IF", log), log
    assert igd.dnat_ports() == {30030, 30031}
    assert _stop(p) == 0
    assert igd.dnat_ports() == set()


def test_loopback_serving_sends_nothing(igd: Lab) -> None:
    """Today's behaviour: on loopback there is no discovery: nothing the discovery or
    mapping code could send (UDP: SSDP, NAT-PMP, PCP, STUN; a TCP SYN: UPnP HTTP,
    metadata) leaves lo, with a router there that would answer. (Stray ACK/RST of the
    earlier tests' closed connections are not counted.)"""
    sh("nft", "add table ip watch; add chain ip watch out { type filter hook output "
       "priority 0; }; add rule ip watch out oifname != \"lo\" meta l4proto udp counter; "
       "add rule ip watch out oifname != \"lo\" tcp flags & (syn | ack) == syn counter",
       ns=igd.server)
    try:
        root = igd.root("srv-loopback")
        p = igd.serve(root, "--listen", "127.0.0.1:2121")
        replies = igd.pasv(igd.server, "127.0.0.1")
        assert pasv_host(replies[0]) == "127.0.0.1"
        time.sleep(1)
        assert _stop(p) == 0
        counted = sh("nft", "list", "chain", "ip", "watch", "out", ns=igd.server).stdout
        assert counted.count("counter packets 0 bytes 0") == 2, counted
        log = igd.serve_log(p)
        assert "nat.masquerade" not in log and "port mapping" not in log, log
    finally:
        sh("nft", "delete", "table", "ip", "watch", ns=igd.server)


# -- cloud metadata, STUN, nothing ------------------------------------------------------

def test_cloud_metadata_address_is_advertised_and_followed(bare: Lab) -> None:
    answer = bare.start_imds("203.0.113.7")
    bare.forward(CONTROL)
    cfg = bare.config("[nat]\ndiscovery_timeout = 1\nrecheck_interval = 0.5\n")
    p = bare.serve(bare.root("srv-imds"), "--config", cfg, "--passive-ports",
                   "30000-30001")
    wait_log(bare, p, r"public address 203\.0\.113\.7 \(from metadata, aws instance "
                       r"metadata\)")
    assert pasv_host(bare.pasv(bare.inet, ROUTER_WAN)[0]) == "203.0.113.7"
    answer.write_text("203.0.113.9")  # the elastic IP moves
    wait_log(bare, p, r"public address changed to 203\.0\.113\.9 \(was 203\.0\.113\.7; "
                       r"from metadata\)")
    assert pasv_host(bare.pasv(bare.inet, ROUTER_WAN)[0]) == "203.0.113.9"
    assert _stop(p) == 0
    assert "PUT /latest/api/token 200" in bare.log("imds.log")


def test_configured_stun_server_tells_the_router_address(bare: Lab) -> None:
    bare.start_stund()
    bare.forward(CONTROL)
    cfg = bare.config("[nat]\ndiscovery_timeout = 1\n")
    p = bare.serve(bare.root("srv-stun"), "--config", cfg, "--stun", f"{INET_IP}:3478",
                   "--passive-ports", "30000-30001")
    log = wait_log(bare, p, rf"public address {ROUTER_WAN} \(from stun, STUN server "
                             rf"{INET_IP}:3478\)")
    assert f"STUN servers: {INET_IP}:3478" in log
    assert pasv_host(bare.pasv(bare.inet, ROUTER_WAN)[0]) == ROUTER_WAN
    assert _stop(p) == 0


def test_nothing_answers_start_is_not_delayed_and_the_log_says_what_was_tried(
        bare: Lab) -> None:
    # a router and an internet that drop everything: every source must time out
    # (the internet host drops only UDP: the FTP client there needs its TCP answers)
    sh("nft", "add table ip silent; add chain ip silent in { type filter hook input "
       "priority -10; policy drop; }", ns=bare.router)
    sh("nft", "add table ip silent; add chain ip silent in { type filter hook input "
       "priority -10; }; add rule ip silent in meta l4proto udp drop", ns=bare.inet)
    bare.forward(CONTROL)
    p = bare.serve(bare.root("srv-silent"), "--stun", INET_IP, "--passive-ports",
                   "30000-30001")
    # a PASV before discovery ends (default nat.discovery_timeout 3 s) gets the local
    # address, as without a masquerade: serving did not wait for discovery (the log
    # read after that PASV does not yet say that discovery gave up)
    early = bare.pasv(bare.inet, ROUTER_WAN)[0]
    assert "no source told" not in bare.serve_log(p), "serving waited for discovery"
    log = wait_log(bare, p, r"no source told the public address within 3 s")
    assert pasv_host(early) == SERVER_IP
    line = next(x for x in log.splitlines() if "no source told" in x)
    assert ("(tried upnp: no answer; natpmp: no answer; pcp: no answer; metadata: aws: "
            "no answer; gcp: no answer; azure: no answer; stun: "
            f"{INET_IP}: no answer); PASV keeps the control connection's local address: "
            "set nat.masquerade") in line, line
    took = (_stamp(log, "no source told") - _stamp(log, "discovering the public address")
            ).total_seconds()
    # bounded by nat.discovery_timeout (3 s), with slack for a loaded machine's timers
    assert took < 3 + 3, took
    assert "has not answered yet" in log  # the usual warning, saying why
    assert _stop(p) == 0


def test_no_router_protocol_for_open_router(bare: Lab) -> None:
    cfg = bare.config("[nat]\nmasquerade = \"off\"\n")
    p = bare.serve(bare.root("srv-nomap"), "--config", cfg, "--open-router",
                   "--passive-ports", "30000-30001")
    log = wait_log(bare, p, r"port mapping: no port mapping protocol answered")
    assert "natftp firewall" in log
    assert "nat.masquerade auto" not in log
    assert _stop(p) == 0


# -- the client: active mode from behind the router (opt-in) ----------------------------

ACTIVE_CLIENT = r"""
import io, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(name)s %(levelname)s %(message)s")
from natftp.client import BlockingClient
url, discover = sys.argv[1], sys.argv[2] == "1"
with BlockingClient(url, mode="active", active_discover=discover, data_timeout=3,
                    timeout=10) as ftp:
    print(ftp.read_bytes("hello.txt").decode(), flush=True)
    ftp.upload(io.BytesIO(b"up from the LAN"), "up.txt")
    print(ftp.last_data_address, ftp.data_strategy, flush=True)
"""


def test_client_active_discover_maps_its_port_and_removes_it(igd: Lab) -> None:
    # an FTP server on the internet (in the lab's internet namespace, no discovery)
    root = igd.root("inet-srv")
    (root / "hello.txt").write_text("hello from the internet")
    srv = igd.popen(igd.inet, sys.executable, "-m",
                    "natftp", "serve", str(root), "--user", f"{USER}:{PASSWORD}",
                    "--listen", f"{INET_IP}:2121", "--masquerade", "off", "--allow-root",
                    log="inet-natftp.log")
    wait_tcp(igd.inet, 2121, limit=20)
    url = f"ftp://{USER}:{PASSWORD}@{INET_IP}:2121/"
    # without discovery: the client tells its private address, which the server refuses
    plain = igd.run("server", [sys.executable, "-c", ACTIVE_CLIENT, url, "0"], timeout=30)
    assert plain.returncode != 0
    assert "172.16.0.2" in plain.stderr, plain.stderr[-2000:]
    # with it: public address from the router, the listening port mapped, then removed
    r = igd.run("server", [sys.executable, "-c", ACTIVE_CLIENT, url, "1"], timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.splitlines()
    assert out[0] == "hello from the internet"
    assert out[1].startswith(f"('{ROUTER_WAN}', ") and out[1].endswith(" active"), out
    port = int(out[1].split(",")[1].strip(" )'").split(")")[0])
    assert (f"active mode: public address {ROUTER_WAN} (from upnp); router maps port "
            f"{port} to us") in r.stderr, r.stderr[-2000:]
    assert (root / "up.txt").read_text() == "up from the LAN"
    assert "removed 1 mapping(s)" in r.stderr
    assert igd.dnat_ports() == set()
    _stop(srv)


# -- issue 20: the status page and the metrics show what discovery and mapping found ----

STATUS_GET = """
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{sys.argv[2]}", timeout=20) as r:
    sys.stdout.write(r.read().decode())
"""


def test_status_page_and_metrics_show_the_discovered_address_and_the_mappings(
        igd: Lab) -> None:
    root = igd.root("srv-status")
    # the server namespace is the lab's own: nothing else listens on this port there
    p = igd.serve(root, "--open-router", "--passive-ports", "30040-30041",
                  "--status-listen", "127.0.0.1:9121")
    try:
        wait_log(igd, p, r"port mapping: port .*: mapped")

        def get(path: str) -> str:
            return sh(sys.executable, "-c", STATUS_GET, "9121", path, ns=igd.server).stdout

        page = get("/")
        got = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(get("/metrics")) for s in f.samples}
    finally:
        assert _stop(p) == 0
    assert igd.dnat_ports() == set()
    summary = re.search(r'<p id="nat-summary">(.*?)</p>', page)
    assert summary and summary.group(1).startswith(
        f"nat.masquerade = auto: router WAN address {ROUTER_WAN} (from upnp); last checked"
    ), page
    assert f'<tr class="nat" data-class="public client" data-told="{ROUTER_WAN}">' in page
    rows = re.findall(r'<tr class="mapping"><td>([\d-]+)</td><td>(\w+)</td><td>(\w+)</td>'
                      r"<td>(\d+) s</td><td>in (\d+) min</td></tr>", page)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("2121", "mapped", "upnp", "3600"), ("30040-30041", "mapped", "upnp", "3600")], page
    assert all(int(r[4]) >= 50 for r in rows), rows
    assert got[("natftp_nat_public_address_info",
                (("address", ROUTER_WAN), ("source", "upnp")))] == 1
    assert got[("natftp_nat_mapping_ports", (("state", "mapped"),))] == 3
    assert got[("natftp_nat_discovery_pending", ())] == 0
    assert got[("natftp_nat_mapping_lease_end_timestamp_seconds", ())] > time.time() + 3000
