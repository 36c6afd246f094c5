"""A natftp cluster behind real HAProxy (Debian's) in the lab (issue 18 acceptance).

HAProxy runs in the router namespace, three natftp nodes in their own namespaces, every
piece configured only by what ``natftp cluster`` printed for one cluster.toml; the nodes
share one served directory; the clients (curl, lftp, ftplib) run in the outside
namespaces c1 (198.51.100.10) and c2 (198.51.100.11).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from natftp.lab.cluster import BALANCER, ClusterLab
from natftp.lab.matrix import ROWS, CellCtx, Row

USER, PASSWORD = "labuser", "labpass"
PASSIVE_ROWS = [r for r in ROWS if r.mode == "passive"]
REPEAT = 30
CLIENTS = {"c1": "198.51.100.10", "c2": "198.51.100.11"}


def _cells(cl: ClusterLab, rows: list[Row], repeat: int, tag: str, payload: bytes,
           workers: int = 6) -> dict[str, list[str]]:
    """Run every row ``repeat`` times (clients alternating c1/c2, in parallel); returns
    {row: [failure details]}."""
    down_sha = hashlib.sha256(payload).hexdigest()
    jobs: list[tuple[Row, CellCtx]] = []
    for i in range(repeat):
        for j, row in enumerate(rows):
            client = "c1" if (i + j) % 2 == 0 else "c2"
            wd = cl.workdir / f"{tag}-{i}-{j}"
            wd.mkdir()
            up = os.urandom(20_000 + 97 * j + i)
            (wd / "up").write_bytes(up)
            jobs.append((row, CellCtx(
                lab=cl.lab, client=client, client_addr=CLIENTS[client], target=cl.public,
                port=cl.port, user=USER, password=PASSWORD, workdir=wd,
                server_root=cl.root, down_name="down.bin", down_sha=down_sha,
                up_src=wd / "up", up_name=f"{tag}-{i}-{j}.bin",
                up_sha=hashlib.sha256(up).hexdigest(), timeout=30)))

    def one(job: tuple[Row, CellCtx]) -> tuple[str, str | None]:
        row, ctx = job
        cell = row.run(ctx)
        return row.name, None if cell.ok else f"{ctx.client}: {cell.detail}"

    failed: dict[str, list[str]] = {}
    with ThreadPoolExecutor(max_workers=workers) as ex:
        for name, why in ex.map(one, jobs):
            if why is not None:
                failed.setdefault(name, []).append(why)
    return failed


def _sessions(log: str) -> list[tuple[str, str]]:
    """(client address, via) of every session a node logged at info level."""
    return re.findall(r"\] connection from (\S+) port \d+(?: via (\S+))?", log)


HOLD = r"""
import socket, sys
held, out = [], []
for _ in range(int(sys.argv[2])):
    s = socket.create_connection((sys.argv[1], 21), timeout=20)
    line = b""
    while not line.endswith(b"\n"):
        got = s.recv(200)
        if not got:
            break
        line += got
    out.append(line.decode().strip())
    held.append(s)
print("\n".join(out), flush=True)
sys.stdin.read()
"""


def _hold(cl: ClusterLab, client: str, n: int) -> tuple[subprocess.Popen[str], list[str]]:
    """Open n control connections from ``client`` one after the other and keep them open;
    returns the process (close its stdin to end it) and the first line of each."""
    p = cl.lab.spawn(client, [sys.executable, "-c", HOLD, cl.public, str(n)],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    lines = [p.stdout.readline().strip() for _ in range(n)]
    return p, lines


@pytest.mark.timeout(900)
def test_haproxy_cluster_of_three_nodes_serves_every_passive_client_with_real_addresses(
        tmp_path: Path) -> None:
    payload = os.urandom(150_000)
    with ClusterLab.up(tmp_path, nodes=3, users={USER: PASSWORD}) as cl:
        (cl.root / "down.bin").write_bytes(payload)
        # every passive row of the client matrix, 30 times each
        failed = _cells(cl, PASSIVE_ROWS, REPEAT, "m", payload)
        assert not failed, failed
        logs = {n: cl.log_of(n).read_text(errors="replace") for n in cl.names}
        per_node = {n: _sessions(text) for n, text in logs.items()}
        want = REPEAT * sum(3 if r.name.startswith("curl") else 1 for r in PASSIVE_ROWS)
        assert sum(len(v) for v in per_node.values()) >= want
        for name, sessions in per_node.items():
            # spread over all nodes, each client seen with its own address, via HAProxy
            assert len(sessions) >= want // 6, (name, len(sessions))
            assert {c for c, _ in sessions} == set(CLIENTS.values()), (name, sessions[:5])
            assert {v for _, v in sessions} == {BALANCER}, name
            # health checks (PROXY LOCAL) are not logged as sessions; nothing refused
            assert "refused" not in logs[name], logs[name][-2000:]

        # a per-IP session limit, from the environment, applies to the real client
        for n in cl.names:
            cl.stop_node(n)
        cl.start_nodes(cl.names, env={"NATFTP_LIMITS_MAX_SESSIONS_PER_IP": "2"})
        cl.wait_state({n: "UP" for n in cl.names})
        holder, lines = _hold(cl, "c2", 7)
        try:
            assert all(x.startswith("220") for x in lines[:6]), lines
            assert lines[6].startswith("421") and "198.51.100.11" in lines[6], lines
            # c1 comes through the same balancer address and is not limited by c2
            other, more = _hold(cl, "c1", 3)
            assert all(x.startswith("220") for x in more), more
            other.communicate("", timeout=20)
        finally:
            holder.communicate("", timeout=20)
        # back to the printed configuration: with the limit of 2 still set, the parallel
        # cells below (several sessions of one client on one node) would be refused
        for n in cl.names:
            cl.stop_node(n)
        cl.start_nodes(cl.names)
        cl.wait_state({n: "UP" for n in cl.names})

        # a node stopped mid-test: new sessions keep working, the check takes it out
        cl.stop_node("node3")
        ftplib_rows = [r for r in PASSIVE_ROWS if r.name.startswith("ftplib")]
        failed = _cells(cl, ftplib_rows, 6, "s", payload)
        assert not failed, failed
        cl.wait_state({"node1": "UP", "node2": "UP", "node3": "DOWN"})
        before = {n: len(_sessions(cl.log_of(n).read_text())) for n in ("node1", "node2")}
        failed = _cells(cl, PASSIVE_ROWS, 2, "d", payload)
        assert not failed, failed
        after = {n: len(_sessions(cl.log_of(n).read_text())) for n in ("node1", "node2")}
        assert all(after[n] > before[n] for n in before), (before, after)
