"""Namespaces with real zero-config daemons for the discovery/mapping tests.

``zlab()`` (kind "internet"): the router's WAN address is public-looking::

    inet ns 198.51.100.2 (+.3) --- r-wan 198.51.100.1 [router] r-lan 172.16.0.1 --- server
      stund (RFC 3489: needs       miniupnpd (UPnP IGD, NAT-PMP, PCP),    172.16.0.2:
      two addresses)               fake IMDS at 169.254.169.254 on lo     natftp discovery

``zlab("contest")``: scenario S1, the router's WAN address is private; the "inet"
namespace is the contest's client (and runs the stund miniupnpd needs)::

    inet ns 192.168.10.2 (+.3) --- r-wan 192.168.10.1 [router] r-lan 172.16.0.1 --- server

``zlab("double")``: the same router behind a second NAT (an ISP's box, a company
network); a public "internet" beyond it, and a client on the router's WAN side::

    inet ns 203.0.113.2 (+.3) --- o-wan 203.0.113.1 [outer NAT] o-lan 192.168.10.254
      stund, public clients                                   |-- wanc ns 192.168.10.2 (+.3)
                                                              |     stund for miniupnpd,
                                                              |     a WAN-side client
                                                              `-- r-wan 192.168.10.1 [router]
                                                                    r-lan 172.16.0.1 --- server

The namespaces, links, addresses and routes are built by natftp.lab (``Lab.build`` of
one :class:`~natftp.lab.topologies.Topology` per kind; "double"'s WAN side is a bridge in
a switch namespace of the lab's): each NAT router masquerades its LAN and rejects
WAN->LAN traffic that was not DNAT-ed (so only a mapping opens a port), with no port
forwards of natftp's. The router also runs miniupnpd with its own ``inet miniupnpd``
table (the Debian package's nft_init.sh is broken). miniupnpd refuses to map while its
WAN address is in a reserved range (198.51.100.0/24 is one) unless it learns by STUN
that nothing filters in front of it, hence stund in the "internet". Everything the lab
started is killed by PID and the namespaces are deleted on exit, even when a test fails.
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
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from natftp.lab import core
from natftp.lab.matrix import DOWN_NAME, ROWS, Cell, CellCtx, Row
from natftp.lab.topologies import Member, RouterSpec, Segment, Topology

INET_IP = "198.51.100.2"
INET_IP2 = "198.51.100.3"
ROUTER_WAN = "198.51.100.1"
ROUTER_LAN = "172.16.0.1"
SERVER_IP = "172.16.0.2"
#: "contest" and "double": the router's WAN side (RFC 1918), its client and stund
PRIVATE_WAN = "192.168.10.1"
WAN_CLIENT, WAN_CLIENT2 = "192.168.10.2", "192.168.10.3"
#: "double": the second NAT and the public internet beyond it (TEST-NET-3)
OUTER_WAN, OUTER_LAN = "203.0.113.1", "192.168.10.254"
PUBLIC_CLIENT, PUBLIC_CLIENT2 = "203.0.113.2", "203.0.113.3"
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


#: miniupnpd's own table on the router (its chains are where it adds its mappings)
MINIUPNPD_NFT = """
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


def miniupnpd_conf(tmp: Path, *, min_port: int = 1024, min_lifetime: int = 120,
                   stun_host: str = INET_IP) -> str:
    return f"""ext_ifname=r-wan
listening_ip=r-lan
http_port=0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
ext_perform_stun=yes
ext_stun_host={stun_host}
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
    #: the natftp servers :meth:`serve` started (stopped after each test by conftest.py)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    #: "internet", "contest" or "double" (see the module docstring)
    kind: str = "internet"
    #: "double" only: the router's WAN-side client namespace and the second NAT
    wanc: str = ""
    outer: str = ""

    @property
    def wan(self) -> str:
        """The router's WAN address."""
        return ROUTER_WAN if self.kind == "internet" else PRIVATE_WAN

    @property
    def stun_for_router(self) -> tuple[str, str, str]:
        """(namespace, address, alternate address) of the stund miniupnpd asks."""
        if self.kind == "internet":
            return self.inet, INET_IP, INET_IP2
        return (self.inet if self.kind == "contest" else self.wanc), WAN_CLIENT, WAN_CLIENT2

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
    def start_stund(self, where: tuple[str, str, str] | None = None) -> None:
        """stund on (namespace, address, alternate address); default: the one the
        router's miniupnpd asks."""
        ns, a, b = where or self.stun_for_router
        stund = need("stund", "stun-server")
        self.popen(ns, stund, "-h", a, "-a", b, log=f"stund.{a}.log")
        wait_udp(ns, 3478)

    def start_miniupnpd(self, *, debug: bool = True, **conf: int) -> None:
        """miniupnpd on the router. ``debug`` (-d, the default): in the foreground,
        logging to a file the tests read; each of its debug lines also goes to
        /dev/console here, which makes it a slow router (~35 s for 101 mappings, see
        docs/zeroconf.md). ``debug=False``: as a daemon (fast; ``bench/`` compares)."""
        binary = need("miniupnpd", "miniupnpd-nftables")
        cfg = self.tmp / "miniupnpd.conf"
        cfg.write_text(miniupnpd_conf(self.tmp, stun_host=self.stun_for_router[1], **conf))
        pidfile = self.tmp / "miniupnpd.pid"
        if debug:
            self.popen(self.router, binary, "-d", "-f", str(cfg), "-P", str(pidfile),
                       log="miniupnpd.log")
        else:
            sh(binary, "-f", str(cfg), "-P", str(pidfile), ns=self.router)
        wait_udp(self.router, 5351)
        # it decides at start (by STUN) whether it may forward; wait for its verdict
        deadline = time.monotonic() + 10
        while debug and time.monotonic() < deadline:
            text = self.log("miniupnpd.log")
            if "STUN:" in text or "HTTP listening" in text and "STUN" not in text:
                break
            time.sleep(0.1)

    def root(self, name: str) -> Path:
        """A fresh directory to serve."""
        root = self.tmp / name
        root.mkdir()
        return root

    def config(self, text: str) -> str:
        """A natftp config file with ``text``; its path."""
        f = self.tmp / f"natftp-{time.monotonic_ns()}.toml"
        f.write_text(text)
        return str(f)

    def miniupnpd_pid(self) -> int:
        return int((self.tmp / "miniupnpd.pid").read_text().split()[0])

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

    def forward_outer(self, ports: str) -> None:
        """"double": forward TCP ``ports`` ("2121, 30000-30009") on the second NAT to the
        router's WAN address, the same port numbers (what natftp's log asks for)."""
        sh("nft", f"add table ip zfwd; add chain ip zfwd pre {{ type nat hook prerouting "
           f"priority -110; }}; add rule ip zfwd pre iifname o-wan tcp dport {{ {ports} }} "
           f"dnat to {PRIVATE_WAN}", ns=self.outer)

    def serve(self, root: Path, *args: str, port: int = 2121, wait: bool = True
              ) -> subprocess.Popen[str]:
        """``natftp serve ROOT --user lab:labpass ARGS`` in the server namespace, with no
        address configuration unless ARGS give one; returns once it listens on ``port``
        (its log: ``self.log("natftp.N.log")``, see :meth:`serve_log`)."""
        p = self.popen(self.server, sys.executable, "-m", "natftp", "serve", str(root),
                       "--user", f"{USER}:{PASSWORD}", "--allow-root", *args,
                       log=f"natftp.{len(self.procs)}.log")
        self.servers.append(p)
        if wait:
            deadline = time.monotonic() + 60  # a loaded machine: start-up, discovery
            while not _listening(self.server, "t", port):
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"natftp serve did not listen on {port}: "
                                       f"{self.serve_log(p)[-3000:]}")
                time.sleep(0.02)
        return p

    def stop_servers(self, limit: float = 60) -> None:
        """End the servers a test left running (it failed before stopping them): SIGTERM,
        so they remove their router mappings, then SIGKILL after ``limit`` s. A lab shared
        by a module must not hand the next test a port already taken."""
        for p in self.servers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.servers:
            try:
                p.wait(limit)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.servers.clear()

    def serve_log(self, p: subprocess.Popen[str]) -> str:
        return self.log(f"natftp.{self.procs.index(p)}.log")

    def pasv(self, ns: str, host: str, port: int = 2121, n: int = 1) -> list[str]:
        """Log in from ``ns`` and send PASV ``n`` times; the 227 replies."""
        r = sh(sys.executable, "-c", PASV_PROBE, host, str(port), str(n), ns=ns)
        return r.stdout.splitlines()

    def run(self, node: str, cmd: list[str], *, timeout: float = 10
            ) -> subprocess.CompletedProcess[str]:
        """For natftp.lab.matrix rows (they call ``ctx.lab.run(node, cmd)``)."""
        ns = {"inet": self.inet, "router": self.router, "server": self.server,
              "wanc": self.wanc, "outer": self.outer}[node]
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                              text=True, timeout=timeout)

    def set_wan(self, address: str) -> None:
        """Renumber the router's WAN side (an ISP handing out a new address)."""
        sh("ip", "addr", "flush", "dev", "r-wan", ns=self.router)
        sh("ip", "addr", "add", f"{address}/24", "dev", "r-wan", ns=self.router)
        sh("ip", "route", "replace", "default", "via", INET_IP, ns=self.router)
        sh("conntrack", "-F", ns=self.router, check=False)


def stop(p: subprocess.Popen[str], limit: float = 30) -> int:
    """SIGTERM a server the lab started; its exit status."""
    p.send_signal(signal.SIGTERM)
    return p.wait(limit)


def wait_log(lab: Lab, p: subprocess.Popen[str], pattern: str, limit: float = 15) -> str:
    """The server's log once ``pattern`` is in it (AssertionError after ``limit`` s or
    when the server ended)."""
    deadline = time.monotonic() + limit
    while True:
        text = lab.serve_log(p)
        if re.search(pattern, text):
            return text
        if p.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in the server log:\n{text[-4000:]}")
        time.sleep(0.05)


def pasv_host(reply: str) -> str:
    m = re.search(r"\((\d+),(\d+),(\d+),(\d+),\d+,\d+\)", reply)
    assert m, reply
    return ".".join(m.groups())


def matrix_cells(lab: Lab, root: Path, *, client: str, client_addr: str, target: str,
                 port: int = 2121, rows: Sequence[Row] | None = None, workers: int = 3,
                 tag: str = "") -> dict[str, Cell]:
    """Rows of the lab matrix (natftp.lab.matrix.ROWS by default) from namespace
    ``client`` to ``target``: LIST, download, upload, sha256 on both ends."""
    import hashlib

    payload = os.urandom(200_000)
    (root / DOWN_NAME).write_bytes(payload)
    ctxs = []
    for i, row in enumerate(ROWS if rows is None else rows):
        wd = lab.tmp / f"cell-{tag}{client}-{i}"
        wd.mkdir()
        up = os.urandom(50_000 + i)
        (wd / "up").write_bytes(up)
        ctxs.append((row, CellCtx(
            lab=lab, client=client, client_addr=client_addr,  # type: ignore[arg-type]
            target=target, port=port, user=USER, password=PASSWORD, workdir=wd,
            server_root=root, down_name=DOWN_NAME,
            down_sha=hashlib.sha256(payload).hexdigest(), up_src=wd / "up",
            up_name=f"up-{tag}{client}-{i}.bin", up_sha=hashlib.sha256(up).hexdigest(),
            timeout=10)))
    with ThreadPoolExecutor(workers) as ex:
        cells = list(ex.map(lambda rc: rc[0].run(rc[1]), ctxs))
    return {row.name: cell for (row, _c), cell in zip(ctxs, cells, strict=True)}


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


def _topology(kind: str) -> Topology:
    """The namespaces of ``kind`` (module docstring), with the interface names the
    tests, miniupnpd's configuration and the rules use."""
    router = RouterSpec("router", "r-wan", "r-lan", "172.16.0.0/24")
    lan = Segment("lan", (Member("router", "r-lan", f"{ROUTER_LAN}/24"),
                          Member("server", "s-lan", f"{SERVER_IP}/24")))
    gateways: tuple[tuple[str, str], ...] = (("server", ROUTER_LAN),)
    routers: tuple[RouterSpec, ...] = (router,)
    if kind == "internet":
        segments = (lan, Segment("wan", (Member("inet", "i-wan", f"{INET_IP}/24"),
                                         Member("router", "r-wan", f"{ROUTER_WAN}/24"))))
        gateways += (("router", INET_IP),)
    elif kind == "contest":
        # the client's network is the router's WAN side; nothing beyond it
        segments = (lan, Segment("wan", (Member("inet", "i-wan", f"{WAN_CLIENT}/24"),
                                         Member("router", "r-wan", f"{PRIVATE_WAN}/24"))))
    else:
        # the WAN side joins the second NAT, the WAN client and the router (a bridge)
        segments = (lan,
                    Segment("olan", (Member("outer", "o-lan", f"{OUTER_LAN}/24"),
                                     Member("wanc", "w-lan", f"{WAN_CLIENT}/24"),
                                     Member("router", "r-wan", f"{PRIVATE_WAN}/24"))),
                    Segment("inet", (Member("inet", "i-wan", f"{PUBLIC_CLIENT}/24"),
                                     Member("outer", "o-wan", f"{OUTER_WAN}/24"))))
        gateways += (("router", OUTER_LAN), ("wanc", OUTER_LAN))
        routers += (RouterSpec("outer", "o-wan", "o-lan", "192.168.10.0/24"),)
    return Topology(name=f"zlab-{kind}", description=f"the zero-config tests' {kind} lab",
                    segments=segments, gateways=gateways, routers=routers,
                    servers=("server",), clients=("inet",), paths=())


#: the second address of the namespaces that run stund (RFC 3489 needs two)
_SECOND = {"internet": (("inet", "i-wan", INET_IP2),),
           "contest": (("inet", "i-wan", WAN_CLIENT2),),
           "double": (("wanc", "w-lan", WAN_CLIENT2), ("inet", "i-wan", PUBLIC_CLIENT2))}


@contextmanager
def zlab(kind: str = "internet") -> Iterator[Lab]:
    """Build the lab of ``kind`` ("internet", "contest", "double"); remove it on exit."""
    if kind not in ("internet", "contest", "double"):
        raise ValueError(f"unknown zlab kind {kind!r}")
    tag = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix=f"zlab-{tag}-"))
    try:
        # natftp.lab checks root and the tools (LabError naming the Debian package)
        with core.Lab.build(_topology(kind)) as net:
            lab = Lab(net.ns("inet"), net.ns("router"), net.ns("server"), tmp, kind=kind)
            if kind == "double":
                lab.wanc, lab.outer = net.ns("wanc"), net.ns("outer")
            for node, dev, address in _SECOND[kind]:
                net.run(node, ["ip", "addr", "add", f"{address}/24", "dev", dev], check=True)
            net.run("router", ["nft", "-f", "-"], input=MINIUPNPD_NFT, check=True)
            try:
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
    finally:
        if os.environ.get("ZLAB_KEEP_LOGS"):
            print(f"zlab logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
