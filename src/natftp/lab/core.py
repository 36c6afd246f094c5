"""Build NAT topologies out of network namespaces and veth pairs (root only).

    with Lab.build("contest", helper=True) as lab:
        lab.run("client", ["curl", ...])
        p = lab.spawn("server", [...])      # killed at teardown
        lab.set_helper(False)               # nft/iptables rule swapped, conntrack -F
        lab.addr("server")                  # "172.16.0.2"

Every namespace is named ``<prefix><node>`` with a per-run prefix
``natftp-<pid>-<rand>-``. Routers get ip_forward=1, icmp_ratelimit=0, a lab table
``inet natftp_lab`` (masquerade of the LAN, WAN->LAN forward filter: established/related
and DNAT-ed accepted, the rest rejected), and the port forwards + optional FTP helper
produced by :mod:`natftp.nat.firewall` -- the same text ``natftp firewall`` prints for
:meth:`Lab.firewall_args`. Teardown kills the processes the lab spawned and any other
process left in its namespaces (by PID, from ``ip netns pids``), then deletes the
namespaces; it runs on exit from the ``with`` block, at interpreter exit and on
SIGTERM/SIGHUP. ``natftp lab down --all`` removes leftovers of killed runs.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

from natftp.lab.topologies import CONTROL_PORT, PASSIVE_PORTS, TOPOLOGIES, Topology
from natftp.nat.firewall import FirewallParams, iptables_remove, params_from_options, render

NS_PREFIX = "natftp-"
STATE_DIR = Path("/run/natftp-lab")
REQUIRED_TOOLS = ("ip", "nft", "conntrack", "sysctl", "ss")
Backend = Literal["nftables", "iptables"]


class LabError(RuntimeError):
    """The lab could not be built or used; the message says which command failed and why."""


def require_root_and_tools(extra: Sequence[str] = ()) -> None:
    """Raise LabError naming what is missing (root, or a command and its Debian package)."""
    if os.geteuid() != 0:
        raise LabError("the NAT lab needs root (network namespaces, nftables): run as root")
    pkgs = {"ip": "iproute2", "ss": "iproute2", "nft": "nftables", "conntrack": "conntrack",
            "sysctl": "procps", "iptables": "iptables", "iptables-restore": "iptables",
            "curl": "curl", "lftp": "lftp", "timeout": "coreutils"}
    missing = [t for t in (*REQUIRED_TOOLS, *extra) if shutil.which(t) is None]
    if missing:
        names = ", ".join(f"{t} (Debian package {pkgs.get(t, t)})" for t in missing)
        raise LabError(f"the NAT lab needs these commands, missing: {names}")


def _run(cmd: Sequence[str], *, input: str | None = None, timeout: float = 20) -> str:
    r = subprocess.run(list(cmd), capture_output=True, text=True, input=input,
                       timeout=timeout)
    if r.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed ({r.returncode}): "
                       f"{(r.stderr or r.stdout).strip()}")
    return r.stdout


def own_prefix() -> str:
    """The prefix of every namespace this process creates (per-run labs add a suffix), so a
    leftover check in one test run is not confused by another run's labs on the machine."""
    return f"{NS_PREFIX}{os.getpid()}-"


def list_namespaces(prefix: str = NS_PREFIX) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         timeout=10).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def kill_namespace_processes(ns: str) -> list[int]:
    """SIGKILL every process inside `ns` (processes a lab started there). Returns PIDs."""
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                       timeout=10)
    killed = []
    for tok in r.stdout.split():
        if tok.isdigit() and int(tok) != os.getpid():
            try:
                os.kill(int(tok), signal.SIGKILL)
                killed.append(int(tok))
            except ProcessLookupError:
                pass
    return killed


def delete_namespaces(names: Sequence[str]) -> None:
    for ns in names:
        kill_namespace_processes(ns)
    # a killed process may take a moment to leave; deleting still works (the namespace
    # disappears with its last process)
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def down_all(prefix: str = NS_PREFIX) -> list[str]:
    """Remove every namespace whose name starts with `prefix` (leftovers), and state files."""
    names = list_namespaces(prefix)
    delete_namespaces(names)
    if STATE_DIR.is_dir():
        for f in STATE_DIR.glob("*.json"):
            if f.stem.startswith(prefix):
                f.unlink(missing_ok=True)
    return names


# ------------------------------------------------------------------- safety net

_LIVE: dict[str, Lab] = {}
_LOCK = threading.Lock()
_SIGNALS_INSTALLED = False


def _cleanup_all() -> None:
    for lab in list(_LIVE.values()):
        try:
            lab.close()
        except Exception:  # noqa: BLE001 (best effort at exit)
            pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_safety_net() -> None:
    global _SIGNALS_INSTALLED
    if _SIGNALS_INSTALLED:
        return
    _SIGNALS_INSTALLED = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


# ------------------------------------------------------------------- the lab


class Lab:
    """A running topology. Build with :meth:`Lab.build`; use as a context manager."""

    def __init__(self, topology: Topology, prefix: str, *, helper: bool, backend: Backend,
                 control_port: int, passive_ports: tuple[int, int]) -> None:
        self.topology = topology
        self.prefix = prefix
        self.name = prefix.rstrip("-")
        self.helper = helper
        self.backend: Backend = backend
        self.control_port = control_port
        self.passive_ports = passive_ports
        self.applied: dict[str, str] = {}  # router node -> firewall text applied
        self._applied_params: dict[str, FirewallParams] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._made: list[str] = []
        self._closed = False
        self.persistent = False

    # --- construction

    @classmethod
    def build(cls, topology: str | Topology, *, helper: bool = False,
              backend: Backend = "nftables", prefix: str | None = None,
              control_port: int = CONTROL_PORT,
              passive_ports: tuple[int, int] = PASSIVE_PORTS,
              persistent: bool = False) -> Lab:
        """Create the namespaces, links, addresses, routes and router rules.

        `persistent=True` (``natftp lab up``) leaves the lab up after this process exits
        and records it in /run/natftp-lab/NAME.json for ``status``/``down``.
        """
        require_root_and_tools(("iptables", "iptables-restore") if backend == "iptables"
                               else ())
        topo = TOPOLOGIES[topology] if isinstance(topology, str) else topology
        if prefix is None:
            prefix = f"{own_prefix()}{secrets.token_hex(2)}-"
        lab = cls(topo, prefix, helper=helper, backend=backend, control_port=control_port,
                  passive_ports=passive_ports)
        lab.persistent = persistent
        if not persistent:
            _install_safety_net()
            with _LOCK:
                _LIVE[lab.name] = lab
        try:
            lab._create()
        except BaseException:
            lab.close()
            raise
        if persistent:
            lab._write_state()
        return lab

    def ns(self, node: str) -> str:
        if node not in self.topology.nodes and node not in self.topology.switches:
            raise LabError(f"topology {self.topology.name} has no node {node!r} "
                           f"(nodes: {', '.join(self.topology.nodes)})")
        return self.prefix + node

    def _ipn(self, node: str, *args: str) -> None:
        _run(["ip", "-n", self.ns(node), *args])

    def _create(self) -> None:
        t = self.topology
        for node in (*t.nodes, *t.switches):
            ns = self.ns(node)
            _run(["ip", "netns", "add", ns])
            self._made.append(ns)
            self._ipn(node, "link", "set", "lo", "up")
        for seg in t.segments:
            sw = seg.switch
            if sw is None:
                a, b = seg.members
                _run(["ip", "link", "add", "name", a.ifname, "netns", self.ns(a.node),
                      "type", "veth", "peer", "name", b.ifname, "netns", self.ns(b.node)])
            else:
                self._ipn(sw, "link", "add", "name", "br0", "type", "bridge")
                self._ipn(sw, "link", "set", "br0", "up")
                for i, m in enumerate(seg.members):
                    port = f"p{i}"
                    _run(["ip", "link", "add", "name", m.ifname, "netns", self.ns(m.node),
                          "type", "veth", "peer", "name", port, "netns", self.ns(sw)])
                    self._ipn(sw, "link", "set", port, "master", "br0")
                    self._ipn(sw, "link", "set", port, "up")
            for m in seg.members:
                self._ipn(m.node, "addr", "add", m.cidr, "dev", m.ifname)
                self._ipn(m.node, "link", "set", m.ifname, "up")
        for node, gw in t.gateways:
            self._ipn(node, "route", "add", "default", "via", gw)
        for r in t.routers:
            ns = self.ns(r.node)
            for kv in ("net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0"):
                _run(["ip", "netns", "exec", ns, "sysctl", "-qw", kv])
            _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=self._lab_table(r.node))
            self._apply_firewall(r.node, self.helper)

    def _lab_table(self, router: str) -> str:
        r = self.topology.router(router)
        assert r is not None
        return f"""table inet natftp_lab
delete table inet natftp_lab
table inet natftp_lab {{
	chain lab_postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		oifname "{r.wan_if}" ip saddr {r.lan_net} masquerade
	}}

	chain lab_forward {{
		type filter hook forward priority filter + 10; policy accept;
		ct state established,related accept
		ct status dnat accept
		iifname "{r.wan_if}" oifname "{r.lan_if}" reject with icmpx admin-prohibited
	}}
}}
"""

    # --- firewall (the generator's output, applied verbatim)

    def firewall_args(self, router: str, helper: bool | None = None) -> list[str]:
        """The ``natftp firewall`` options whose output this lab applies on `router`."""
        r = self.topology.router(router)
        if r is None:
            raise LabError(f"{router!r} is not a router in {self.topology.name}")
        on = self.helper if helper is None else helper
        args = ["--backend", self.backend, "--control-port", str(self.control_port),
                "--passive-ports", f"{self.passive_ports[0]}-{self.passive_ports[1]}",
                "--no-host", "--active-source-port", "0"]
        if r.forward_to is not None:
            args += ["--router", r.wan_if, "--server", self.addr(r.forward_to),
                     "--lan-if", r.lan_if]
        if on:
            args.append("--ftp-helper")
        return args

    def _params(self, router: str, helper: bool) -> FirewallParams:
        r = self.topology.router(router)
        assert r is not None
        fwd = r.forward_to is not None
        return params_from_options(
            control_port=self.control_port,
            passive_ports=f"{self.passive_ports[0]}-{self.passive_ports[1]}",
            router=r.wan_if if fwd else None,
            server=self.addr(r.forward_to) if r.forward_to else None,
            lan_if=r.lan_if if fwd else None,
            ftp_helper=helper, no_host=True, active=True, active_source_port=None)

    def _apply_firewall(self, router: str, helper: bool) -> None:
        ns = self.ns(router)
        params = self._params(router, helper)
        text = render(params, self.backend)
        if self.backend == "nftables":
            _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text)
        else:
            old = self._applied_params.get(router)
            if old is not None:
                for cmd in iptables_remove(old):
                    subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                                   timeout=10)
            _run(["ip", "netns", "exec", ns, "iptables-restore", "--noflush"], input=text)
        self.applied[router] = text
        self._applied_params[router] = params

    def set_helper(self, on: bool) -> None:
        """Attach/detach the kernel FTP helper on every router, then flush conntrack."""
        for r in self.topology.routers:
            self._apply_firewall(r.node, on)
            subprocess.run(["ip", "netns", "exec", self.ns(r.node), "conntrack", "-F"],
                           capture_output=True, timeout=10)
        self.helper = on

    # --- addresses

    def addr(self, node: str, segment: str | None = None) -> str:
        """The node's (first, or on `segment`) IPv4 address."""
        for seg in self.topology.segments:
            if segment is not None and seg.name != segment:
                continue
            for m in seg.members:
                if m.node == node:
                    return m.addr
        raise LabError(f"node {node!r} has no address"
                       + (f" on segment {segment!r}" if segment else ""))

    def addresses(self) -> dict[str, list[str]]:
        return {n: [f"{m.ifname} {m.cidr}" for m in self.topology.members_of(n)]
                for n in self.topology.nodes}

    # --- processes

    def exec_prefix(self, node: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node)]

    def run(self, node: str, cmd: Sequence[str], *, timeout: float = 10,
            input: str | None = None, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside `node` and wait (text mode, output captured)."""
        r = subprocess.run([*self.exec_prefix(node), *cmd], capture_output=True, text=True,
                           input=input, timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise LabError(f"in {node}: `{' '.join(cmd)}` failed ({r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()}")
        return r

    def spawn(self, node: str, cmd: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start `cmd` inside `node`; the lab kills it (by PID) at teardown."""
        p: subprocess.Popen[Any] = subprocess.Popen([*self.exec_prefix(node), *cmd],
                                                     **popen_kw)
        self._procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[Any], grace: float = 1.0) -> None:
        """Stop a process started with :meth:`spawn` (SIGTERM, then SIGKILL)."""
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for f in (p.stdout, p.stderr, p.stdin):
            if f is not None:
                f.close()

    # --- teardown

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self._procs:
            try:
                self.stop(p, grace=0.5)
            except Exception:  # noqa: BLE001
                pass
        delete_namespaces(self._made)
        with _LOCK:
            _LIVE.pop(self.name, None)
        (STATE_DIR / f"{self.name}.json").unlink(missing_ok=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- persistent labs (natftp lab up/status/down)

    def _write_state(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {"name": self.name, "prefix": self.prefix, "topology": self.topology.name,
                 "helper": self.helper, "backend": self.backend, "created": time.time(),
                 "namespaces": self._made, "addresses": self.addresses()}
        (STATE_DIR / f"{self.name}.json").write_text(json.dumps(state, indent=1))


def read_states() -> list[dict[str, Any]]:
    if not STATE_DIR.is_dir():
        return []
    out = []
    for f in sorted(STATE_DIR.glob("*.json")):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return out


def down(name: str) -> list[str]:
    """Remove the lab `name` (``natftp-PID-RAND``): its namespaces and state file."""
    prefix = name if name.endswith("-") else name + "-"
    names = list_namespaces(prefix)
    delete_namespaces(names)
    (STATE_DIR / f"{prefix.rstrip('-')}.json").unlink(missing_ok=True)
    return names
