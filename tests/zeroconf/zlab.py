"""Namespaces with real zero-config daemons for the discovery/mapping tests.

    inet ns 198.51.100.2 (+.3) --- r-wan 198.51.100.1 [router] r-lan 172.16.0.1 --- server
      stund (RFC 3489: needs       miniupnpd (UPnP IGD, NAT-PMP, PCP),    172.16.0.2:
      two addresses)               fake IMDS at 169.254.169.254 on lo     natftp discovery

The router masquerades the LAN, rejects WAN->LAN traffic that was not DNAT-ed (so only a
mapping opens a port), and runs miniupnpd with its own ``inet miniupnpd`` table (the
Debian package's nft_init.sh is broken). miniupnpd refuses to map while its WAN address
is in a reserved range (198.51.100.0/24 is one) unless it learns by STUN that nothing
filters in front of it, hence stund in the "internet". Everything the lab started is
killed by PID and the namespaces are deleted on exit, even when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

INET_IP = "198.51.100.2"
INET_IP2 = "198.51.100.3"
ROUTER_WAN = "198.51.100.1"
ROUTER_LAN = "172.16.0.1"
SERVER_IP = "172.16.0.2"
IMDS_IP = "169.254.169.254"
USER, PASSWORD = "lab", "labpass"
REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def need(tool: str, package: str) -> str:
    path = shutil.which(tool) or next(
        (p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.access(p, os.X_OK)), None)
    if path is None:
        raise RuntimeError(f"{tool} is missing: install the Debian package {package} "
                           "(scripts/setup-system.sh does)")
    return path


def sh(*args: str, ns: str | None = None, input: str | None = None, check: bool = True
       ) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r


ROUTER_NFT = """
table ip zlab {
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "r-wan" ip saddr 172.16.0.0/24 masquerade
    }
    chain forward_filter {
        type filter hook forward priority 0; policy accept;
        ct state established,related accept
        ct status dnat accept
        iifname "r-wan" oifname "r-lan" reject with icmp type admin-prohibited
    }
}
table inet miniupnpd {
    chain forward {
        type filter hook forward priority 0; policy accept;
        jump miniupnpd
    }
    chain miniupnpd {
    }
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
}
"""


def miniupnpd_conf(tmp: Path, *, min_port: int = 1024, min_lifetime: int = 120) -> str:
    return f"""ext_ifname=r-wan
listening_ip=r-lan
http_port=0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
ext_perform_stun=yes
ext_stun_host={INET_IP}
ext_stun_port=3478
upnp_table_name=miniupnpd
upnp_nat_table_name=miniupnpd
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
min_lifetime={min_lifetime}
lease_file={tmp}/leases
uuid={uuid.uuid4()}
allow {min_port}-65535 172.16.0.0/24 {min_port}-65535
deny 0-65535 0.0.0.0/0 0-65535
"""


@dataclass
class Lab:
    inet: str
    router: str
    server: str
    tmp: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    # -- running things ------------------------------------------------------------
    def popen(self, ns: str, *args: str, stdin: bool = False, log: str | None = None
              ) -> subprocess.Popen[str]:
        err = open(self.tmp / (log or f"{Path(args[0]).name}.{len(self.procs)}.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args], text=True,
                             stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=err)
        self.procs.append(p)
        return p

    def natftp_nat(self, *args: str, timeout: float = 30) -> dict[str, object]:
        """Run ``python -m natftp.nat.discovery ARGS`` in the server namespace; its JSON."""
        r = subprocess.run(["ip", "netns", "exec", self.server, sys.executable, "-m",
                            "natftp.nat.discovery", *args], capture_output=True,
                           text=True, timeout=timeout)
        if not r.stdout.strip():
            raise RuntimeError(f"no output from discovery {args}: {r.stderr[-2000:]}")
        out: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
        out["stderr"] = r.stderr
        return out

    def nat_agent(self, *args: str) -> subprocess.Popen[str]:
        return self.popen(self.server, sys.executable, "-m", "natftp.nat.discovery", *args,
                          stdin=args[0] == "map", log=f"agent.{len(self.procs)}.log")

    def ruleset(self) -> str:
        return sh("nft", "list", "table", "inet", "miniupnpd", ns=self.router).stdout

    def dnat_ports(self) -> set[int]:
        """The ports miniupnpd forwards to the server right now (its nft table)."""
        return {int(m) for m in re.findall(rf"th dport (\d+) dnat ip to {SERVER_IP}:\1",
                                           self.ruleset())}

    def log(self, name: str) -> str:
        p = self.tmp / name
        return p.read_text() if p.exists() else ""

    # -- daemons -------------------------------------------------------------------
    def start_stund(self) -> None:
        stund = need("stund", "stun-server")
        self.popen(self.inet, stund, "-h", INET_IP, "-a", INET_IP2, log="stund.log")
        wait_udp(self.inet, 3478)

    def start_miniupnpd(self, **conf: int) -> None:
        binary = need("miniupnpd", "miniupnpd-nftables")
        cfg = self.tmp / "miniupnpd.conf"
        cfg.write_text(miniupnpd_conf(self.tmp, **conf))
        self.popen(self.router, binary, "-d", "-f", str(cfg), "-P",
                   str(self.tmp / "miniupnpd.pid"), log="miniupnpd.log")
        wait_udp(self.router, 5351)
        # it decides at start (by STUN) whether it may forward; wait for its verdict
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = self.log("miniupnpd.log")
            if "STUN:" in text or "HTTP listening" in text and "STUN" not in text:
                break
            time.sleep(0.1)

    def start_imds(self, address: str) -> Path:
        """A fake AWS IMDSv2 endpoint at 169.254.169.254:80 on the router's lo;
        its answer is read from the returned file at each request."""
        sh("ip", "addr", "add", f"{IMDS_IP}/32", "dev", "lo", ns=self.router)
        answer = self.tmp / "imds-answer"
        answer.write_text(address)
        self.popen(self.router, sys.executable, str(HERE / "fake_imds.py"), IMDS_IP,
                   str(answer), log="imds.log")
        wait_tcp(self.router, 80)
        return answer

    def forward(self, port: int) -> None:
        """A manual port forward WAN:port -> server:port (for tests that only need the
        control connection from outside; the zero-config ones use no such thing)."""
        sh("nft", f"add table ip fwdtest; add chain ip fwdtest pre {{ type nat hook "
           f"prerouting priority -110; }}; add rule ip fwdtest pre iifname r-wan tcp dport "
           f"{port} dnat to {SERVER_IP}:{port}", ns=self.router)

    def serve(self, root: Path, *args: str, port: int = 2121, wait: bool = True
              ) -> subprocess.Popen[str]:
        """``natftp serve ROOT --user lab:labpass ARGS`` in the server namespace, with no
        address configuration unless ARGS give one; returns once it listens on ``port``
        (its log: ``self.log("natftp.N.log")``, see :meth:`serve_log`)."""
        p = self.popen(self.server, sys.executable, "-m", "natftp", "serve", str(root),
                       "--user", f"{USER}:{PASSWORD}", *args,
                       log=f"natftp.{len(self.procs)}.log")
        if wait:
            deadline = time.monotonic() + 20
            while not _listening(self.server, "t", port):
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"natftp serve did not listen on {port}: "
                                       f"{self.serve_log(p)[-3000:]}")
                time.sleep(0.02)
        return p

    def serve_log(self, p: subprocess.Popen[str]) -> str:
        return self.log(f"natftp.{self.procs.index(p)}.log")

    def pasv(self, ns: str, host: str, port: int = 2121, n: int = 1) -> list[str]:
        """Log in from ``ns`` and send PASV ``n`` times; the 227 replies."""
        r = sh(sys.executable, "-c", PASV_PROBE, host, str(port), str(n), ns=ns)
        return r.stdout.splitlines()

    def run(self, node: str, cmd: list[str], *, timeout: float = 10
            ) -> subprocess.CompletedProcess[str]:
        """For natftp.lab.matrix rows (they call ``ctx.lab.run(node, cmd)``)."""
        ns = {"inet": self.inet, "router": self.router, "server": self.server}[node]
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                              text=True, timeout=timeout)

    def set_wan(self, address: str) -> None:
        """Renumber the router's WAN side (an ISP handing out a new address)."""
        sh("ip", "addr", "flush", "dev", "r-wan", ns=self.router)
        sh("ip", "addr", "add", f"{address}/24", "dev", "r-wan", ns=self.router)
        sh("ip", "route", "replace", "default", "via", INET_IP, ns=self.router)
        sh("conntrack", "-F", ns=self.router, check=False)


PASV_PROBE = f"""
import ftplib, sys
f = ftplib.FTP()
f.connect(sys.argv[1], int(sys.argv[2]), timeout=5)
f.login("{USER}", "{PASSWORD}")
for _ in range(int(sys.argv[3])):
    print(f.sendcmd("PASV"), flush=True)
f.quit()
"""


def _listening(ns: str, flag: str, port: int) -> bool:
    out = sh("ss", "-Hln" + flag, ns=ns, check=False).stdout
    return any(line.split()[3].endswith(f":{port}") for line in out.splitlines()
               if len(line.split()) > 3)


def wait_udp(ns: str, port: int, limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while not _listening(ns, "u", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on udp/{port} in {ns} after {limit} s")
        time.sleep(0.05)


def wait_tcp(ns: str, port: int, limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while not _listening(ns, "t", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on tcp/{port} in {ns} after {limit} s")
        time.sleep(0.05)


@contextmanager
def zlab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        raise RuntimeError("the zero-config tests need root (network namespaces)")
    need("nft", "nftables")
    need("conntrack", "conntrack")
    tag = uuid.uuid4().hex[:6]
    lab = Lab(f"zi-{tag}", f"zr-{tag}", f"zs-{tag}",
              Path(tempfile.mkdtemp(prefix=f"zlab-{tag}-")))
    made: list[str] = []
    try:
        for ns in (lab.inet, lab.router, lab.server):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", "i-wan", "netns", lab.inet, "type", "veth", "peer", "name",
           "r-wan", "netns", lab.router)
        sh("ip", "link", "add", "s-lan", "netns", lab.server, "type", "veth", "peer", "name",
           "r-lan", "netns", lab.router)
        sh("ip", "addr", "add", f"{INET_IP}/24", "dev", "i-wan", ns=lab.inet)
        sh("ip", "addr", "add", f"{INET_IP2}/24", "dev", "i-wan", ns=lab.inet)
        sh("ip", "link", "set", "i-wan", "up", ns=lab.inet)
        sh("ip", "addr", "add", f"{ROUTER_WAN}/24", "dev", "r-wan", ns=lab.router)
        sh("ip", "addr", "add", f"{ROUTER_LAN}/24", "dev", "r-lan", ns=lab.router)
        sh("ip", "link", "set", "r-wan", "up", ns=lab.router)
        sh("ip", "link", "set", "r-lan", "up", ns=lab.router)
        sh("ip", "route", "add", "default", "via", INET_IP, ns=lab.router)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=lab.router)
        sh("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", ns=lab.router)
        sh("ip", "addr", "add", f"{SERVER_IP}/24", "dev", "s-lan", ns=lab.server)
        sh("ip", "link", "set", "s-lan", "up", ns=lab.server)
        sh("ip", "route", "add", "default", "via", ROUTER_LAN, ns=lab.server)
        sh("nft", "-f", "-", ns=lab.router, input=ROUTER_NFT)
        yield lab
    finally:
        for p in lab.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in lab.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=3)
        for ns in made:
            _kill_inside(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        if os.environ.get("ZLAB_KEEP_LOGS"):
            print(f"zlab logs kept in {lab.tmp}")
        else:
            shutil.rmtree(lab.tmp, ignore_errors=True)


def _kill_inside(ns: str) -> None:
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                       timeout=10)
    for pid in r.stdout.split():
        if pid.isdigit():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
