"""natftp's own server through real kernel NAT (issue 3: scenarios S1, S2, S5, S6).

Every test builds its namespaces, runs real clients (curl, lftp, ftplib) in them against
`natftp serve` in the server namespace, and removes everything afterwards.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from natftp.lab.core import Lab
from natftp.lab.launchers import ServerSpec, natftp_launcher, spawn_logged, wait_listening
from natftp.lab.matrix import ROWS, ServerConfig, run_matrix

PASSIVE_ROWS = [r for r in ROWS if r.mode == "passive"]
TRUSTING = {"curl PASV trust", "ftplib PASV trust"}


def _failures(res, rows) -> dict[str, str]:
    return {f"{r.name} @ {c.label}": res.cell(r.name, c).detail
            for c in res.columns for r in rows if not res.cell(r.name, c).ok}


def test_masquerade_makes_every_passive_client_work_through_server_nat_helper_off_and_on(
) -> None:
    res = run_matrix(["contest", "fourway"], helpers=(False, True),
                     servers=[ServerConfig("natftp+masq", natftp_launcher, True)],
                     rows=PASSIVE_ROWS, paths=["contest", "natc-nats", "pubc-nats"])
    assert len(res.columns) == 6
    assert not _failures(res, PASSIVE_ROWS)


class _LogKeepingLauncher:
    """natftp_launcher, but the server's log survives the matrix's temporary dirs."""

    def __init__(self, log: Path, listen: str | None = None) -> None:
        self.log, self.listen = log, listen

    def __call__(self, lab: Lab, spec: ServerSpec) -> subprocess.Popen[Any]:
        if self.listen:
            spec = dataclasses.replace(spec, listen=self.listen)
        cmd = [sys.executable, "-m", "natftp", "serve",
               str(spec.root), "--listen", f"{spec.listen}:{spec.port}", "--user",
               f"{spec.user}:{spec.password}", "--passive-ports",
               f"{spec.passive_ports[0]}-{spec.passive_ports[1]}", "--allow-root"]
        if spec.masquerade:
            cmd += ["--masquerade", spec.masquerade]
        with open(self.log, "ab") as out:
            p = lab.spawn(spec.node, cmd, stdin=subprocess.DEVNULL, stdout=out,
                          stderr=subprocess.STDOUT)
        wait_listening(lab, spec, p)
        return p


def test_without_masquerade_only_trusting_clients_fail_and_the_server_warns(
        tmp_path: Path) -> None:
    log = tmp_path / "natftp.log"
    res = run_matrix(["fourway"], helpers=(False,),
                     servers=[ServerConfig("natftp", _LogKeepingLauncher(log), False)],
                     rows=PASSIVE_ROWS, paths=["pubc-nats"], timeout=5)
    (col,) = res.columns
    for row in PASSIVE_ROWS:
        cell = res.cell(row.name, col)
        if row.name in TRUSTING:
            assert not cell.ok, f"{row.name} should fail: it trusts 172.16.0.2"
        else:
            assert cell.ok, f"{row.name}: {cell.detail}"
    text = log.read_text(errors="replace")
    assert "nat.masquerade" in text and "198.51.100" in text, text[-3000:]
    # one warning per client network, not one per PASV
    assert text.count("was told this server's private") == 1, text[-3000:]


def test_contest_dual_stack_server_behind_helper_router_serves_every_client(
        tmp_path: Path) -> None:
    """S1: listening on [::] (dual-stack), no masquerade, the router's helper on."""
    log = tmp_path / "natftp.log"
    res = run_matrix(["contest"], helpers=(True,),
                     servers=[ServerConfig("natftp-dualstack",
                                           _LogKeepingLauncher(log, listen="[::]"), False)])
    assert not _failures(res, ROWS), log.read_text(errors="replace")[-2000:]
    assert "0,0,0,0" not in log.read_text(errors="replace")


PASV_PROBE = r"""
import ftplib, sys
f = ftplib.FTP()
f.connect(sys.argv[1], int(sys.argv[2]), timeout=5)
f.login("lab", "labpass")
for _ in range(int(sys.argv[3])):
    print(f.sendcmd("PASV"), flush=True)
f.quit()
"""


def _start_natftp(lab: Lab, root: Path, extra: list[str]) -> subprocess.Popen[Any]:
    spec = ServerSpec("server", lab.addr("server"), lab.control_port, lab.passive_ports,
                      root, "lab", "labpass")
    cmd = [sys.executable, "-m", "natftp", "serve", str(root), "--listen",
           f"{spec.listen}:{spec.port}", "--user", "lab:labpass", "--passive-ports",
           f"{lab.passive_ports[0]}-{lab.passive_ports[1]}", "--allow-root", *extra]
    p = spawn_logged(lab, spec, cmd)
    wait_listening(lab, spec, p)
    return p


def _pasv(lab: Lab, node: str, target: str, port: int, n: int = 1) -> list[str]:
    r = lab.run(node, [sys.executable, "-c", PASV_PROBE, target, str(port), str(n)],
                timeout=15)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_lan_and_wan_clients_at_once_each_get_their_own_address(tmp_path: Path) -> None:
    """S6: same server, masquerade set; LAN client told the LAN address, WAN the public."""
    root = tmp_path / "root"
    root.mkdir()
    with Lab.build("lan", helper=False) as lab:
        _start_natftp(lab, root, ["--masquerade", "198.51.100.1"])
        lan = lab.spawn("lanc", [sys.executable, "-c", PASV_PROBE, "172.16.0.2",
                                 str(lab.control_port), "20"], stdout=subprocess.PIPE,
                        text=True)
        wan = lab.spawn("wanc", [sys.executable, "-c", PASV_PROBE, "198.51.100.1",
                                 str(lab.control_port), "20"], stdout=subprocess.PIPE,
                        text=True)
        lan_out, _ = lan.communicate(timeout=20)
        wan_out, _ = wan.communicate(timeout=20)
    assert lan.returncode == 0 and wan.returncode == 0
    lan_lines, wan_lines = lan_out.splitlines(), wan_out.splitlines()
    assert len(lan_lines) == 20 and len(wan_lines) == 20
    assert all("(172,16,0,2," in line for line in lan_lines), lan_lines
    assert all("(198,51,100,1," in line for line in wan_lines), wan_lines


def test_masquerade_hostname_change_is_followed_while_running(tmp_path: Path) -> None:
    """S5: a dynamic-DNS name re-resolved; the next PASV carries the new address."""
    root = tmp_path / "root"
    root.mkdir()
    cfg = tmp_path / "natftp.toml"
    cfg.write_text('[nat]\nmasquerade = "home.natftp.test"\nrefresh_interval = 0.2\n')
    with Lab.build("contest", helper=False) as lab:
        etc = Path("/etc/netns") / lab.ns("server")
        etc.mkdir(parents=True, exist_ok=True)
        hosts = etc / "hosts"
        hosts.write_text("127.0.0.1 localhost\n192.168.10.1 home.natftp.test\n")
        try:
            _start_natftp(lab, root, ["--config", str(cfg)])
            first = _pasv(lab, "client", "192.168.10.1", lab.control_port)
            assert "(192,168,10,1," in first[0], first
            # the ISP renumbers: rewrite in place (the bind mount follows the inode)
            with open(hosts, "r+") as f:
                f.seek(0)
                f.truncate()
                f.write("127.0.0.1 localhost\n192.168.10.77 home.natftp.test\n")
            deadline = time.monotonic() + 10
            seen = first
            while time.monotonic() < deadline:
                seen = _pasv(lab, "client", "192.168.10.1", lab.control_port)
                if "(192,168,10,77," in seen[0]:
                    break
                time.sleep(0.2)
            assert "(192,168,10,77," in seen[0], seen
        finally:
            hosts.unlink(missing_ok=True)
            etc.rmdir()
