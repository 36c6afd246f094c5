"""FTPS with ``natftp serve`` behind real kernel NAT (issue 5, scenario S7).

Contest topology: client 192.168.10.2 -> router 192.168.10.1 (DNAT of the control port
and the passive range) -> server 172.16.0.2. With TLS the router's FTP helper cannot read
the 227, so only the server's own address policy (``--masquerade``) makes passive mode
work for clients that trust the 227 address; CCC after login gives the helper plaintext
to rewrite again. Every cell lists, downloads and uploads with sha256 compared.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from natftp.lab.core import Lab
from natftp.lab.launchers import ServerSpec, log_path, spawn_logged, wait_listening

USER, PW = "lab", "labpass"
ROUTER = "192.168.10.1"

FTPLIB_TLS = r"""
import ftplib, hashlib, io, ssl, sys
host, port, mode, down, up = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
f = ftplib.FTP_TLS(context=ctx, timeout=5)
f.connect(host, port); f.login("lab", "labpass"); f.prot_p()
if "trust" in mode:
    f.trust_server_pasv_ipv4_address = True
if "ccc" in mode:
    f.ccc()
    print("FIRST-AFTER-CCC", f.sendcmd("PASV"))
    f.sendcmd("ABOR")
print("PASV-REPLY", f.sendcmd("PASV"))
f.sendcmd("ABOR")
names = f.nlst()
buf = io.BytesIO(); f.retrbinary("RETR " + down, buf.write)
f.storbinary("STOR " + up, io.BytesIO(open("/proc/self/cmdline", "rb").read() * 1000))
f.quit()
print("NAMES", " ".join(names)); print("SHA", hashlib.sha256(buf.getvalue()).hexdigest())
"""


class Env:
    def __init__(self, lab: Lab, root: Path, tmp: Path, down_sha: str) -> None:
        self.lab, self.root, self.tmp, self.down_sha = lab, root, tmp, down_sha


def _start(lab: Lab, tmp: Path, extra: list[str]) -> tuple[Env, subprocess.Popen[Any],
                                                           Path]:
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    data = os.urandom(300_000)
    (root / "down.bin").write_bytes(data)
    spec = ServerSpec("server", lab.addr("server"), lab.control_port, lab.passive_ports,
                      root, USER, PW)
    cmd = [sys.executable, "-m", "natftp", "serve", str(root), "--listen",
           f"{spec.listen}:{spec.port}", "--user", f"{USER}:{PW}", "--passive-ports",
           f"{lab.passive_ports[0]}-{lab.passive_ports[1]}", "--tls", "--state-dir",
           str(tmp / "state"), "-v", "--allow-root", *extra]
    p = spawn_logged(lab, spec, cmd)
    wait_listening(lab, spec, p)
    return Env(lab, root, tmp, hashlib.sha256(data).hexdigest()), p, log_path(spec)


def _curl(trust: bool, ccc: bool = False, tls: bool = True) -> Callable[[Env, str], str]:
    def run(env: Env, tag: str) -> str:
        opts = ["curl", "-sS", "-v", "--connect-timeout", "3", "--max-time", "8", "-k"]
        opts += ["--ssl-reqd"] if tls else []
        opts += ["--disable-epsv", "--no-ftp-skip-pasv-ip"] if trust else []
        opts += ["--ftp-ssl-ccc"] if ccc else []
        url = f"ftp://{USER}:{PW}@{ROUTER}:{env.lab.control_port}/"
        local = env.tmp / f"{tag}.down"
        up = env.tmp / f"{tag}.up"
        up.write_bytes(os.urandom(70_000))
        seen = ""
        for args in ([url], ["-o", str(local), url + "down.bin"],
                     ["-T", str(up), url + f"{tag}.bin"]):
            r = env.lab.run("client", [*opts, *args], timeout=20)
            seen += r.stderr
            if r.returncode != 0:
                return f"FAIL curl {args[-1]}: exit {r.returncode}"
        if hashlib.sha256(local.read_bytes()).hexdigest() != env.down_sha:
            return "FAIL download sha256"
        if (env.root / f"{tag}.bin").read_bytes() != up.read_bytes():
            return "FAIL upload sha256"
        told = re.findall(r"^< 227 .*", seen, re.M)
        return "OK " + (told[0] if told else "")
    return run


def _lftp(env: Env, tag: str) -> str:
    local = env.tmp / f"{tag}.down"
    script = "; ".join([
        "set net:timeout 3", "set net:max-retries 1", "set net:persist-retries 0",
        "set cmd:fail-exit yes", "set xfer:clobber on", "set ftp:ssl-force true",
        "set ftp:ssl-protect-data true", "set ssl:verify-certificate no",
        f"open -u {USER},{PW} -p {env.lab.control_port} ftp://{ROUTER}", "ls",
        f"get down.bin -o {local}", f"put {local} -o {tag}.bin"])
    r = env.lab.run("client", ["lftp", "-c", script], timeout=30)
    if r.returncode != 0:
        return f"FAIL lftp exit {r.returncode}: {r.stderr.strip()[-200:]}"
    if hashlib.sha256(local.read_bytes()).hexdigest() != env.down_sha:
        return "FAIL download sha256"
    if hashlib.sha256((env.root / f"{tag}.bin").read_bytes()).hexdigest() != env.down_sha:
        return "FAIL upload sha256"
    return "OK"


def _ftplib(mode: str) -> Callable[[Env, str], str]:
    def run(env: Env, tag: str) -> str:
        r = env.lab.run("client", [sys.executable, "-c", FTPLIB_TLS, ROUTER,
                                   str(env.lab.control_port), mode, "down.bin",
                                   f"{tag}.bin"], timeout=30)
        if r.returncode != 0:
            return f"FAIL ftplib: {r.stderr.strip().splitlines()[-1:]}"
        if f"SHA {env.down_sha}" not in r.stdout or not (env.root / f"{tag}.bin").exists():
            return "FAIL ftplib sha256 or upload"
        told = re.findall(r"(?:FIRST-AFTER-CCC|PASV-REPLY) (.*)", r.stdout)
        return "OK " + " | ".join(told)
    return run


ROWS: dict[str, Callable[[Env, str], str]] = {
    "curl EPSV": _curl(trust=False),
    "curl PASV trust": _curl(trust=True),
    "lftp ssl-force": _lftp,  # trusts a private 227 when the control address is private
    "ftplib FTP_TLS": _ftplib("default"),
    "ftplib FTP_TLS trust": _ftplib("trust"),
}
TRUSTING = {"curl PASV trust", "lftp ssl-force", "ftplib FTP_TLS trust"}


def _run_rows(env: Env, rows: dict[str, Callable[[Env, str], str]],
              suffix: str) -> dict[str, str]:
    out = {}
    for name, fn in rows.items():
        tag = re.sub(r"\W+", "-", f"{name}-{suffix}")
        out[name] = fn(env, tag)
    return out


def test_ftps_passive_with_masquerade_works_for_every_client_helper_off_and_on(
        tmp_path: Path) -> None:
    with Lab.build("contest", helper=False) as lab:
        env, _, log = _start(lab, tmp_path, ["--masquerade", ROUTER])
        results = {}
        for helper in (False, True):
            lab.set_helper(helper)
            for name, res in _run_rows(env, ROWS, f"h{int(helper)}").items():
                results[f"{name} helper={'on' if helper else 'off'}"] = res
    bad = {k: v for k, v in results.items() if not v.startswith("OK")}
    assert not bad, (bad, log.read_text(errors="replace")[-3000:])
    # the trusting clients were told the router's address by the server itself
    assert "(192,168,10,1," in results["curl PASV trust helper=off"]


def test_without_masquerade_the_helper_is_blind_to_tls_and_trusting_clients_fail(
        tmp_path: Path) -> None:
    with Lab.build("contest", helper=True) as lab:
        env, _, log = _start(lab, tmp_path, [])
        results = _run_rows(env, ROWS, "blind")
        # the same helper does rewrite plain FTP: proof it is on and working
        plain = _curl(trust=True, tls=False)(env, "plain-trust")
    for name, res in results.items():
        if name in TRUSTING:
            assert res.startswith("FAIL"), f"{name} should fail: the 227 it reads is " \
                f"172.16.0.2 inside TLS ({res})"
        else:
            assert res.startswith("OK"), f"{name}: {res}"
    assert plain.startswith("OK") and "(192,168,10,1," in plain, plain
    text = log.read_text(errors="replace")
    assert "PASV 172.16.0.2:" in text  # what the server sent


def test_ccc_after_login_lets_the_helper_rewrite_the_227_again(tmp_path: Path) -> None:
    """No masquerade, helper on, CCC: the server sends 172.16.0.2 in the clear and the
    client reads the router's 192.168.10.1: the helper rewrote it. Data stays PROT P."""
    with Lab.build("contest", helper=True) as lab:
        env, _, log = _start(lab, tmp_path, ["--tls-ccc"])
        curl = _curl(trust=True, ccc=True)(env, "curl-ccc")
        ftpl = _ftplib("trust+ccc")(env, "ftplib-ccc")
        lab.set_helper(False)
        no_helper = _ftplib("trust+ccc")(env, "ftplib-ccc-nohelper")
    text = log.read_text(errors="replace")
    assert curl.startswith("OK") and "(192,168,10,1," in curl, (curl, text[-2000:])
    # ftplib sends PASV right after CCC: the helper only parses a segment that follows one
    # ending in a newline, and the last thing before it was TLS (close_notify), so that
    # first 227 passes unrewritten; the next one, after a clear reply, is rewritten
    first, later = ftpl.removeprefix("OK ").split(" | ")
    assert ftpl.startswith("OK") and "(172,16,0,2," in first, (ftpl, text[-2000:])
    assert "(192,168,10,1," in later, ftpl
    assert "PASV 172.16.0.2:" in text and "(CCC)" in text
    assert "over TLS" in text  # the data connections were still TLS
    # and without the helper, the same client is told (and fails on) the private address
    assert no_helper.startswith("FAIL"), no_helper
