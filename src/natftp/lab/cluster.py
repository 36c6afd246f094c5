"""A natftp cluster in the lab: HAProxy in the router namespace of the ``cluster``
topology in front of natftp nodes in their own namespaces, every piece configured only by
what ``natftp cluster`` printed for one ``cluster.toml`` (issue 18; the lab test and
``bench/run.py --bench cluster`` use it).

    with ClusterLab.up(tmp, nodes=3, users={"labuser": "labpass"}) as cl:
        cl.lab.run("c1", ["curl", f"ftp://labuser:labpass@{cl.public}/"])
        cl.stats()              # {"node1": "UP", ...} from HAProxy's stats socket
        cl.stop_node("node3")   # SIGTERM; HAProxy's health check takes it out
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from natftp.lab.core import Lab, LabError
from natftp.lab.launchers import ServerSpec, spawn_logged, wait_listening

PUBLIC = "198.51.100.1"
BALANCER = "10.0.1.1"
NODE_ADDR = {"node1": "10.0.1.11", "node2": "10.0.1.12", "node3": "10.0.1.13"}
CONTROL_PORT = 21
NODE_PORT = 2121
PASSIVE = (30000, 30299)


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cluster_toml(root: Path, nodes: int, stats_socket: Path, password_hashes: Mapping[
        str, str], *, data_proxy_protocol: bool = True, serve_extra: str = "") -> str:
    """The cluster.toml the lab's cluster is planned from."""
    lines = [
        "[public]", f"address = {_toml_str(PUBLIC)}", f"control_port = {CONTROL_PORT}",
        f'passive_ports = "{PASSIVE[0]}-{PASSIVE[1]}"', "",
        "[balancer]", 'kind = "haproxy"', f"address = {_toml_str(BALANCER)}",
        "check_interval_ms = 500", f"stats_socket = {_toml_str(str(stats_socket))}",
        f"data_proxy_protocol = {'true' if data_proxy_protocol else 'false'}", "",
    ]
    for name in list(NODE_ADDR)[:nodes]:
        lines += ["[[nodes]]", f"name = {_toml_str(name)}",
                  f"address = {_toml_str(NODE_ADDR[name])}", f"port = {NODE_PORT}", ""]
    lines += ["[serve]", f"root = {_toml_str(str(root))}", serve_extra]
    for user, h in password_hashes.items():
        lines += ["[[serve.users]]", f"name = {_toml_str(user)}",
                  f"password_hash = {_toml_str(h)}", ""]
    return "\n".join(lines) + "\n"


def natftp_cluster(*args: str) -> str:
    """Run ``natftp cluster ARGS`` and return what it printed (raise on failure)."""
    r = subprocess.run([sys.executable, "-m", "natftp", "cluster", *args],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise LabError(f"natftp cluster {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


class ClusterLab:
    """A running cluster (see the module docstring); a context manager."""

    def __init__(self, lab: Lab, workdir: Path, root: Path, names: list[str]) -> None:
        self.lab, self.workdir, self.root, self.names = lab, workdir, root, names
        self.public = PUBLIC
        self.port = CONTROL_PORT
        self.stats_socket = workdir / "haproxy.sock"
        self.cluster_file = workdir / "cluster.toml"
        self.procs: dict[str, subprocess.Popen[Any]] = {}
        self.haproxy: subprocess.Popen[Any] | None = None

    @classmethod
    def up(cls, workdir: Path, *, nodes: int = 3, users: Mapping[str, str],
           data_proxy_protocol: bool = True, serve_extra: str = "") -> ClusterLab:
        """Build the ``cluster`` lab, plan it with ``natftp cluster`` and start HAProxy
        and ``nodes`` natftp nodes sharing ``workdir/root``."""
        from argon2 import PasswordHasher

        if not 1 <= nodes <= len(NODE_ADDR):
            raise LabError(f"the cluster lab has 1-{len(NODE_ADDR)} nodes, not {nodes}")
        root = workdir / "root"
        root.mkdir(parents=True, exist_ok=True)
        names = list(NODE_ADDR)[:nodes]
        # argon2 with small costs (they travel in the hash): hundreds of lab logins on a
        # busy 2-core machine would otherwise spend seconds each in the hash
        cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        hashes = {u: cheap.hash(p) for u, p in users.items()}
        lab = Lab.build("cluster")
        cl = cls(lab, workdir, root, names)
        try:
            cl.cluster_file.write_text(cluster_toml(
                root, nodes, cl.stats_socket, hashes,
                data_proxy_protocol=data_proxy_protocol, serve_extra=serve_extra))
            for name in names:
                (workdir / f"{name}.toml").write_text(
                    natftp_cluster("node", name, "--config", str(cl.cluster_file)))
            cl.start_nodes(names)
            cfg = workdir / "haproxy.cfg"
            cfg.write_text(natftp_cluster("haproxy", "--config", str(cl.cluster_file)))
            with open(workdir / "haproxy.log", "ab") as log:
                cl.haproxy = lab.spawn("router", ["haproxy", "-db", "-f", str(cfg)],
                                       stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT)
            cl.wait_state({n: "UP" for n in names})
        except BaseException:
            cl.close()
            raise
        return cl

    def log_of(self, name: str) -> Path:
        return self.root.with_name(f"{self.root.name}-{name}.log")

    def spec(self, name: str) -> ServerSpec:
        return ServerSpec(node=name, listen=NODE_ADDR[name], port=NODE_PORT,
                          passive_ports=PASSIVE, root=self.root, user="", password="")

    def start_nodes(self, names: list[str], env: Mapping[str, str] | None = None) -> None:
        """``natftp serve --config NAME.toml`` (what ``natftp cluster node`` printed) in
        each node's namespace, with ``env`` added to the environment; all started, then
        each waited for."""
        started = []
        for name in names:
            # a lab namespace is root's playground: serving beyond loopback as root is meant
            cmd = [sys.executable, "-m", "natftp", "serve", "--config",
                   str(self.workdir / f"{name}.toml"), "--allow-root"]
            if env:
                cmd = ["env", *(f"{k}={v}" for k, v in env.items()), *cmd]
            p = spawn_logged(self.lab, self.spec(name), cmd)
            self.procs[name] = p
            started.append((name, p))
        for name, p in started:
            wait_listening(self.lab, self.spec(name), p, timeout=30)

    def stop_node(self, name: str) -> None:
        p = self.procs.pop(name)
        self.lab.stop(p, grace=10)

    def stats(self) -> dict[str, str]:
        """Each node's state in HAProxy's control backend: "UP" once a health check
        passed, "DOWN", or HAProxy's word for the states between."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.stats_socket))
            s.sendall(b"show stat\n")
            chunks = []
            while True:
                got = s.recv(65536)
                if not got:
                    break
                chunks.append(got)
        text = b"".join(chunks).decode()
        head = text.splitlines()[0].lstrip("# ").split(",")
        col, chk = head.index("status"), head.index("check_status")
        out = {}
        for line in text.splitlines()[1:]:
            f = line.split(",")
            if len(f) > chk and f[0] == "ftp_nodes" and f[1] in NODE_ADDR:
                state = f[col]
                if state == "UP" and f[chk] != "L7OK":
                    state = f"UP (check {f[chk] or 'not run yet'})"
                out[f[1]] = state
        return out

    def wait_state(self, want: Mapping[str, str], timeout: float = 30) -> None:
        """Wait until HAProxy reports these nodes in these states (bounded)."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.haproxy is not None and self.haproxy.poll() is not None:
                log = (self.workdir / "haproxy.log").read_text(errors="replace")
                raise LabError(f"haproxy exited ({self.haproxy.returncode}): {log[-2000:]}")
            try:
                seen = self.stats()
            except OSError:
                seen = {}
            if all(seen.get(n) == s for n, s in want.items()):
                return
            time.sleep(0.1)
        raise LabError(f"HAProxy did not report {dict(want)} within {timeout:g} s "
                       f"(last: {seen})")

    def close(self) -> None:
        self.lab.close()

    def __enter__(self) -> ClusterLab:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
