"""The NAT lab itself: namespaces come and go, NAT works, rules are the generator's."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from nettools import DIAL, ECHO_PEER, PASV_REPLY, PYTHON

from natftp.lab.core import Lab, list_namespaces
from natftp.lab.launchers import ServerSpec, pyftpdlib_launcher
from natftp.lab.topologies import TOPOLOGIES

NATFTP = [sys.executable, "-m", "natftp"]


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_topology_up_and_gone(name: str) -> None:
    topo = TOPOLOGIES[name]
    with Lab.build(name) as lab:
        present = list_namespaces(lab.prefix)
        assert sorted(present) == sorted(lab.ns(n) for n in (*topo.nodes, *topo.switches))
        for node in topo.nodes:  # lo up and the addresses configured everywhere
            out = lab.run(node, ["ip", "-br", "addr"], check=True).stdout
            assert "lo" in out and "UNKNOWN" in out.splitlines()[0]
            for m in topo.members_of(node):
                assert m.cidr in out
        for r in topo.routers:
            fwd = lab.run(r.node, ["sysctl", "-n", "net.ipv4.ip_forward",
                                   "net.ipv4.icmp_ratelimit"], check=True).stdout.split()
            assert fwd == ["1", "0"]
    assert list_namespaces(lab.prefix) == []


def test_teardown_on_exception_kills_spawned_processes() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        with Lab.build("contest") as lab:
            p = lab.spawn("server", ["sleep", "60"])
            pids.append(p.pid)
            # a process the lab did not spawn itself but that lives in its namespace
            q = subprocess.Popen(lab.exec_prefix("client") + ["sleep", "60"])
            pids.append(q.pid)
            raise RuntimeError("boom")
    assert list_namespaces(lab.prefix) == []
    q.wait(5)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_safety_net_removes_namespaces_when_the_process_is_terminated() -> None:
    code = ("import time; from natftp.lab.core import Lab; lab = Lab.build('contest'); "
            "print(lab.prefix, flush=True); time.sleep(30)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    prefix = p.stdout.readline().strip()
    assert len(list_namespaces(prefix)) == 3
    p.terminate()
    p.wait(10)
    p.stdout.close()
    assert list_namespaces(prefix) == []


def test_lab_up_status_down_cli() -> None:
    r = subprocess.run([*NATFTP, "lab", "up", "lan", "--helper"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    name = r.stdout.split()[1]
    try:
        assert "ip netns exec" in r.stdout and "172.16.0.3/24" in r.stdout
        st = subprocess.run([*NATFTP, "lab", "status"], capture_output=True, text=True,
                            timeout=30)
        assert f"{name}: lan, helper on, 5/5 namespaces present" in st.stdout
    finally:
        d = subprocess.run([*NATFTP, "lab", "down", name], capture_output=True, text=True,
                           timeout=30)
    assert d.returncode == 0 and "removed 5 namespace(s)" in d.stdout
    assert list_namespaces(name + "-") == []


def test_lab_refuses_without_root() -> None:
    r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                        *NATFTP, "lab", "up", "contest"], capture_output=True, text=True,
                       timeout=30, env={**os.environ, "HOME": "/tmp"})
    assert r.returncode == 1
    assert "needs root" in r.stderr


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_nat_forwarding_and_private_address_unreachable(backend: str) -> None:
    with Lab.build("contest", backend=backend) as lab:
        lab.spawn("server", [PYTHON, "-c", ECHO_PEER, "0.0.0.0", "2121", "1"])
        lab.spawn("client", [PYTHON, "-c", ECHO_PEER, "0.0.0.0", "7000", "1"])
        time.sleep(0.3)
        # the forwarded control port, through the router's outside address; the server
        # sees the real client (DNAT only)
        out = lab.run("client", [PYTHON, "-c", DIAL, "192.168.10.1", "2121"]).stdout
        assert out.strip() == "OK hello 192.168.10.2"
        # the private address is not reachable from outside, even with a route to it
        out = lab.run("client", [PYTHON, "-c", DIAL, "172.16.0.2", "2121"]).stdout
        assert out.startswith("ERR") and "timeout" not in out, out
        # an unforwarded port on the router is refused at once
        out = lab.run("client", [PYTHON, "-c", DIAL, "192.168.10.1", "2200"]).stdout
        assert out.strip() == "ERR ECONNREFUSED"
        # outbound from the server is masqueraded to the router's outside address
        out = lab.run("server", [PYTHON, "-c", DIAL, "192.168.10.2", "7000"]).stdout
        assert out.strip() == "OK hello 192.168.10.1"


def test_fourway_both_nats() -> None:
    with Lab.build("fourway") as lab:
        lab.spawn("snat", [PYTHON, "-c", ECHO_PEER, "0.0.0.0", "2121", "1"])
        time.sleep(0.3)
        out = lab.run("cnat", [PYTHON, "-c", DIAL, "198.51.100.2", "2121"]).stdout
        assert out.strip() == "OK hello 198.51.100.1"  # client-side NAT seen by the server
        out = lab.run("cpub", [PYTHON, "-c", DIAL, "172.16.0.2", "2121"]).stdout
        assert out.startswith("ERR") and "timeout" not in out, out


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
@pytest.mark.parametrize("helper", [False, True])
def test_applied_rules_are_what_natftp_firewall_prints(backend: str, helper: bool) -> None:
    with Lab.build("fourway", backend=backend, helper=helper) as lab:
        for r in lab.topology.routers:
            args = lab.firewall_args(r.node)
            cli = subprocess.run([*NATFTP, "firewall", *args], capture_output=True,
                                 text=True, timeout=30)
            assert cli.returncode == 0, cli.stderr
            assert cli.stdout == lab.applied[r.node]
        # and the kernel holds them
        if backend == "nftables":
            live = lab.run("rb", ["nft", "list", "table", "inet", "natftp"], check=True).stdout
            assert 'iifname "wan" tcp dport 2121 dnat ip to 172.16.0.2:2121' in live
            assert 'iifname "wan" tcp dport 50000-50049 dnat ip to 172.16.0.2' in live
            assert ('ct helper set "ftp-2121"' in live) == helper
            live_a = lab.run("ra", ["nft", "list", "table", "inet", "natftp"],
                             check=True).stdout
            assert ('ct helper set "ftp-2121"' in live_a) == helper
        else:
            live = lab.run("rb", ["iptables-save"], check=True).stdout
            assert "-A NATFTP-DNAT -i wan -p tcp -m tcp --dport 50000:50049 -j DNAT " \
                "--to-destination 172.16.0.2" in live
            assert ("--helper ftp" in live) == helper
        lab.set_helper(not helper)  # toggling replaces the rules, still the CLI's text
        for r in lab.topology.routers:
            args = lab.firewall_args(r.node)
            assert ("--ftp-helper" in args) == (not helper)
            cli = subprocess.run([*NATFTP, "firewall", *args], capture_output=True,
                                 text=True, timeout=30)
            assert cli.stdout == lab.applied[r.node]


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_kernel_helper_rewrites_227_only_when_on(backend: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="natftp-labtest-"))
    try:
        with Lab.build("contest", helper=True, backend=backend) as lab:
            spec = ServerSpec("server", "172.16.0.2", lab.control_port, lab.passive_ports,
                              root, "u", "pw", masquerade=None)
            pyftpdlib_launcher(lab, spec)

            def pasv() -> str:
                r = lab.run("client", [PYTHON, "-c", PASV_REPLY, "192.168.10.1",
                                       str(lab.control_port), "u", "pw"], check=True)
                return r.stdout.strip()

            assert "(192,168,10,1," in pasv()  # rewritten by the router's helper
            lab.set_helper(False)
            assert "(172,16,0,2," in pasv()  # the server's own private address
            lab.set_helper(True)
            assert "(192,168,10,1," in pasv()
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
