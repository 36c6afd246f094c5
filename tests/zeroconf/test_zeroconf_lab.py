"""Zero-config NAT against real daemons in network namespaces (root; see zlab.py).

Discovery runs in the server namespace as ``python -m natftp.nat.discovery`` (the same
code the server calls) and prints JSON; the router's nftables ruleset and real TCP
connections from the "internet" namespace show what the mappings did.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from zlab import INET_IP, ROUTER_WAN, SERVER_IP, Lab, sh

pytestmark = pytest.mark.timeout(90)


def discover(lab: Lab, *args: str) -> dict[str, Any]:
    return lab.natftp_nat("discover", *args)


# -- discovery -------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["upnp", "natpmp", "pcp"])
def test_router_tells_its_wan_address(igd: Lab, source: str) -> None:
    r = discover(igd, "--sources", source)
    assert r["address"] == ROUTER_WAN, r
    assert r["source"] == source
    assert r["tried"] == [[source, f"answered {ROUTER_WAN}"]]


def test_default_order_prefers_upnp(igd: Lab) -> None:
    r = discover(igd, "--stun", INET_IP)
    assert (r["address"], r["source"]) == (ROUTER_WAN, "upnp"), r
    assert [s for s, _ in r["tried"]] == ["upnp", "natpmp", "pcp", "metadata", "stun"]
    assert "IGD http://172.16.0.1:" in r["detail"]
    assert dict(r["tried"])["pcp"].startswith("not needed")


def test_pcp_waits_for_natpmp(igd: Lab) -> None:
    # the same daemon speaks both; PCP discovery (which may create a probe mapping)
    # is only tried when NAT-PMP did not answer
    before = igd.log("miniupnpd.log").count("PCP request received")
    r = discover(igd, "--sources", "natpmp,pcp")
    assert r["tried"] == [["natpmp", f"answered {ROUTER_WAN}"],
                          ["pcp", "not needed (a preferred source answered)"]]
    assert igd.log("miniupnpd.log").count("PCP request received") == before


def test_stun_server_in_the_internet_sees_the_router(igd: Lab) -> None:
    r = discover(igd, "--sources", "stun", "--stun", f"{INET_IP}:3478")
    assert (r["address"], r["source"]) == (ROUTER_WAN, "stun"), r
    assert r["detail"] == f"STUN server {INET_IP}:3478"


def test_stun_is_not_used_unless_configured(igd: Lab) -> None:
    r = discover(igd, "--sources", "stun")
    assert r["address"] is None
    assert r["tried"] == [["stun", "no servers configured (nat.stun_servers)"]]


def test_aws_imdsv2_endpoint(bare: Lab) -> None:
    bare.start_imds("203.0.113.7")
    r = discover(bare, "--sources", "metadata")
    assert (r["address"], r["source"]) == ("203.0.113.7", "metadata"), r
    assert r["detail"] == "aws instance metadata"
    log = bare.log("imds.log")
    assert "PUT /latest/api/token 200" in log  # the IMDSv2 token flow, not IMDSv1
    assert "GET /latest/meta-data/public-ipv4 200" in log


def test_private_metadata_answer_is_not_advertised(bare: Lab) -> None:
    bare.start_imds("10.1.2.3")
    r = discover(bare, "--sources", "metadata,stun", "--stun", INET_IP, "--timeout", "2")
    assert r["tried"][0] == ["metadata", "answered 10.1.2.3, which is private: another "
                             "NAT lies beyond"]
    assert r["address"] is None  # no stund running in this lab


def test_nothing_answers_within_the_timeout(bare: Lab) -> None:
    t0 = time.monotonic()
    r = discover(bare, "--timeout", "1.5", "--stun", f"{INET_IP}:3478")
    wall = time.monotonic() - t0
    assert r["address"] is None
    tried = dict(r["tried"])
    assert list(tried) == ["upnp", "natpmp", "pcp", "metadata", "stun"]
    # NAT-PMP/PCP/STUN: the router and the "internet" host answer ICMP port unreachable
    assert tried["natpmp"].startswith("refused"), tried
    assert tried["pcp"].startswith("refused"), tried
    assert tried["stun"].startswith(f"{INET_IP}:3478: refused"), tried
    assert tried["upnp"] == "no answer"
    assert tried["metadata"] != ""
    assert "no source told the public address" in r["message"]
    assert "set nat.masquerade" in r["message"]
    # the contract: start-up is not delayed beyond nat.discovery_timeout (+0.5 s cleanup)
    assert r["elapsed"] < 1.5 + 0.6, r
    assert wall < 10  # interpreter start-up included


def test_silent_network_is_bounded_too(bare: Lab) -> None:
    # the router drops what it gets (no ICMP): every source has to time out
    sh("nft", "add table ip silent; add chain ip silent in { type filter hook input "
       "priority -10; policy drop; }", ns=bare.router)
    sh("nft", "add table ip silent2; add chain ip silent2 in { type filter hook input "
       "priority -10; policy drop; }", ns=bare.inet)
    r = discover(bare, "--timeout", "1", "--stun", INET_IP)
    assert r["address"] is None
    assert [s for s, _o in r["tried"]] == ["upnp", "natpmp", "pcp", "metadata", "stun"]
    assert all(o.endswith("no answer") for _s, o in r["tried"]), r["tried"]
    assert r["elapsed"] < 1 + 0.6, r


def test_recheck_follows_a_wan_renumbering(igd: Lab) -> None:
    p = igd.nat_agent("recheck", "--sources", "upnp", "--interval", "0.3",
                      "--duration", "20")
    try:
        first = json.loads(p.stdout.readline())  # type: ignore[union-attr]
        assert first == {"event": "change", "address": ROUTER_WAN}
        igd.set_wan("198.51.100.7")
        second = json.loads(p.stdout.readline())  # type: ignore[union-attr]
        assert second == {"event": "change", "address": "198.51.100.7"}
    finally:
        p.terminate()
        p.wait(5)
        igd.set_wan(ROUTER_WAN)
        # miniupnpd re-learns the address from the interface; wait until it has
        deadline = time.monotonic() + 10
        while discover(igd, "--sources", "natpmp")["address"] != ROUTER_WAN:
            assert time.monotonic() < deadline, "miniupnpd did not get its WAN back"
            time.sleep(0.2)
    assert "changed to 198.51.100.7 (was 198.51.100.1; from upnp)" in igd.log(
        f"agent.{igd.procs.index(p)}.log")


# -- port mapping ----------------------------------------------------------------------

class Agent:
    """``python -m natftp.nat.discovery map`` in the server namespace."""

    def __init__(self, lab: Lab, *args: str) -> None:
        self.p = lab.nat_agent("map", *args)
        self.events: list[dict[str, Any]] = []

    def until(self, event: str) -> dict[str, Any]:
        assert self.p.stdout is not None
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise AssertionError(f"agent ended before {event}: {self.events}")
            self.events.append(json.loads(line))
            if self.events[-1].get("event") == event:
                return self.events[-1]

    def stop(self) -> dict[str, Any]:
        assert self.p.stdin is not None
        self.p.stdin.write("stop\n")
        self.p.stdin.flush()
        done = self.until("stopped")
        self.p.wait(10)
        return done


def dnat_ports(lab: Lab) -> set[int]:
    return {int(m) for m in re.findall(rf"th dport (\d+) dnat ip to {SERVER_IP}:\1",
                                       lab.ruleset())}


def wan_fetch(lab: Lab, port: int) -> str:
    """Connect from the internet namespace to the router's WAN address:port."""
    code = ("import socket,sys\n"
            "try:\n"
            f"    s=socket.create_connection(('{ROUTER_WAN}',{port}),timeout=3)\n"
            "    print(s.recv(100).decode())\n"
            "except OSError as e:\n"
            "    print(type(e).__name__)\n")
    return sh(sys.executable, "-c", code, ns=lab.inet).stdout.strip()


def lan_listener(lab: Lab, port: int) -> subprocess.Popen[str]:
    code = ("import socket\n"
            f"l=socket.create_server(('{SERVER_IP}',{port}))\n"
            "print('ready',flush=True)\n"
            "c,a=l.accept()\n"
            "c.sendall(('hello from the LAN, you are '+a[0]).encode())\n"
            "c.close()\n")
    p = lab.popen(lab.server, sys.executable, "-c", code, log=f"listener.{port}.log")
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


@pytest.mark.parametrize("protocol", ["upnp", "pcp", "natpmp"])
def test_mappings_open_the_router_and_go_away(igd: Lab, protocol: str) -> None:
    ports = [2121, *range(30000, 30005)]
    assert dnat_ports(igd) == set()
    assert wan_fetch(igd, 30002) == "ConnectionRefusedError"  # closed before
    agent = Agent(igd, "--ports", "2121,30000-30004", "--protocols", protocol,
                  "--control", "2121")
    first = agent.until("first_pass")
    assert first["mapped"] == ports, first
    assert first["tried"][0][0] == protocol
    assert dnat_ports(igd) == set(ports)
    per_port = [e for e in agent.events if e["event"] == "port"]
    # the control port first, alone; the passive ports then pipelined (any order)
    assert per_port[0]["port"] == 2121
    assert sorted(e["port"] for e in per_port) == sorted(ports)
    assert all(e["state"] == "mapped" and e["protocol"] == protocol for e in per_port)
    lan_listener(igd, 30002)
    assert wan_fetch(igd, 30002) == f"hello from the LAN, you are {INET_IP}"
    done = agent.stop()
    assert set(done["states"].values()) == {"removed"}, done
    assert dnat_ports(igd) == set()
    assert wan_fetch(igd, 30002) == "ConnectionRefusedError"


def test_refusal_names_the_manual_rules(igd: Lab) -> None:
    # this miniupnpd allows only ports 1024-65535 (Debian's sample policy): 21 is refused
    agent = Agent(igd, "--ports", "21,30010-30011", "--protocols", "upnp")
    first = agent.until("first_pass")
    assert first["mapped"] == [30010, 30011]
    refused = [line for line in first["report"] if line.startswith("port 21:")]
    assert refused == ["port 21: refused (router refused: UPnP error 606 (action not "
                       "authorized); forward it by hand: `natftp firewall --router WAN_IF "
                       "--server ADDR` prints the rules)"], first["report"]
    assert dnat_ports(igd) == {30010, 30011}
    done = agent.stop()
    assert done["states"] == {"21": "refused", "30010": "removed", "30011": "removed"}
    assert dnat_ports(igd) == set()


#: how miniupnpd logs a mapping request of each protocol for port 30020
RENEWAL_LOG = {"natpmp": "port mapping request : 30020->",
               "upnp": "AddPortMapping: ext port 30020 to"}


@pytest.mark.parametrize("protocol", ["natpmp", "upnp"])
def test_leases_are_renewed_before_they_expire(igd: Lab, protocol: str) -> None:
    # UPnP: a renewal is the same AddPortMapping again; miniupnpd refused it (718) while
    # the remote host went as "0.0.0.0" instead of the wildcard "", and the refused port
    # was then left on the router at stop
    key = RENEWAL_LOG[protocol]
    mark = len(igd.log("miniupnpd.log"))
    agent = Agent(igd, "--ports", "30020", "--protocols", protocol, "--lease", "3")
    assert agent.until("first_pass")["mapped"] == [30020]
    time.sleep(5)  # a 3 s lease is renewed after 1.5 s, 3 s, 4.5 s
    assert dnat_ports(igd) == {30020}
    log = igd.log("miniupnpd.log")[mark:]
    assert log.count(key) >= 3, log.count(key)
    assert not re.search(r"\(rhost '[^']*'\) already redirected", log)  # no 718
    done = agent.stop()
    assert done["states"] == {"30020": "removed"}, done
    assert dnat_ports(igd) == set()


def test_no_router_protocol(bare: Lab) -> None:
    agent = Agent(bare, "--ports", "30000-30001", "--timeout", "1")
    first = agent.until("first_pass")
    assert first["mapped"] == []
    assert [n for n, _ in first["tried"]] == ["upnp", "pcp", "natpmp"]
    assert first["report"][0].startswith("no port mapping protocol answered (tried upnp: "
                                         "no answer; pcp: ")
    assert "natftp firewall" in first["report"][0]
    agent.stop()
