"""Real FTP servers for the doctor's tests: pyftpdlib, vsftpd and ProFTPD, started by PID.

Each context manager starts one server process (optionally inside a network namespace,
through ``ip netns exec``), waits until it accepts connections, yields its address, and
kills exactly that process afterwards. vsftpd and ProFTPD log in the local user that
``scripts/setup-system.sh`` provisions (:data:`peers.SYSTEM_USER`, through PAM and
/etc/shadow), and ProFTPD runs from the package that script unpacks
(:data:`peers.PROFTPD`): nothing is installed or created here; what is missing is an
error naming the script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support import peers
from support.clientpeers import self_signed
from support.peers import free_port

HERE = Path(__file__).parent
FTP_USER = peers.SYSTEM_USER
FTP_PASS = peers.SYSTEM_PASSWORD


@dataclass
class Running:
    host: str
    port: int
    user: str
    password: str
    proc: subprocess.Popen[bytes]
    root: Path

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"ftp://{self.user}:{self.password}@{h}:{self.port}/"


def _netns(cmd: list[str], netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd


def _wait_banner(host: str, port: int, proc: subprocess.Popen[bytes], netns: str | None,
                 deadline_s: float = 5.0) -> None:
    """Wait until the server answers 220 (bounded). In a namespace, ask from inside."""
    end = time.monotonic() + deadline_s
    probe = ("import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),1);"
             "print(s.recv(200).decode(errors='replace'))")
    while time.monotonic() < end:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited early ({proc.returncode}): {out}")
        r = subprocess.run(_netns([sys.executable, "-c", probe, host, str(port)], netns),
                           capture_output=True, text=True, timeout=5)
        if r.returncode == 0 and r.stdout.startswith("220"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server on {host}:{port} did not answer 220 within {deadline_s} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


@contextmanager
def _running(cmd: list[str], host: str, port: int, root: Path, netns: str | None,
             *leftovers: Path) -> Iterator[Running]:
    """Start ``cmd`` (in ``netns``), wait for its banner, yield it; then kill it by PID and
    remove ``root`` and the ``leftovers`` (its configuration, certificate, run directory)."""
    proc = subprocess.Popen(_netns(cmd, netns), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        _wait_banner(host, port, proc, netns)
        yield Running(host, port, FTP_USER, FTP_PASS, proc, root)
    finally:
        _stop(proc)
        for d in (root, *leftovers):
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            else:
                d.unlink(missing_ok=True)


@contextmanager
def pyftpd(host: str = "127.0.0.1", *, masquerade: str | None = None,
           perm: str = "elradfmwMT", passive_ports: str | None = None,
           netns: str | None = None, port: int | None = None, tls: bool = False,
           tls_required: bool = False) -> Iterator[Running]:
    root = Path(tempfile.mkdtemp(prefix="doctor-py-"))
    (root / "hello.txt").write_text("hello\n")
    port = port or free_port(host if netns is None else "127.0.0.1")
    cmd = [sys.executable, str(HERE / "pyftpd_peer.py"), "--root", str(root),
           "--listen", f"{host}:{port}", "--user", f"{FTP_USER}:{FTP_PASS}", "--perm", perm]
    if masquerade:
        cmd += ["--masquerade", masquerade]
    if passive_ports:
        cmd += ["--passive-ports", passive_ports]
    pem = root.parent / f"{root.name}.pem"
    if tls:
        cmd += ["--tls", str(self_signed(pem, "ftp.example.test")[0])]
        if tls_required:
            cmd.append("--tls-required")
    with _running(cmd, host, port, root, netns, pem) as s:
        yield s


def ensure_user() -> None:
    """The local user vsftpd and ProFTPD log in (PAM / /etc/shadow) and vsftpd's
    secure_chroot_dir: provisioned by scripts/setup-system.sh, checked here."""
    peers._system_user()  # PeerError naming the script when the user is missing
    if not peers.VSFTPD_CHROOT.is_dir():
        raise peers.PeerError(f"{peers.VSFTPD_CHROOT} is missing: {peers.SETUP_HINT}")


@contextmanager
def vsftpd(host: str = "127.0.0.1", *, listen_ipv6: bool = False,
           pasv_address: str | None = None, write: bool = True,
           pasv_ports: tuple[int, int] | None = None, netns: str | None = None,
           port: int | None = None) -> Iterator[Running]:
    """vsftpd 3 in the foreground. With ``listen_ipv6`` it listens on an IPv6 socket
    (``::`` inside a namespace, ``::ffff:127.0.0.1`` on loopback) that IPv4 clients reach
    through mapped addresses, which is the contest's configuration."""
    peers._need(peers.VSFTPD, "vsftpd")
    ensure_user()
    root = Path(tempfile.mkdtemp(prefix="doctor-vs-"))
    os.chmod(root, 0o777)
    (root / "hello.txt").write_text("hello\n")
    port = port or free_port("127.0.0.1")
    lines = [
        "background=NO", f"listen_port={port}", "anonymous_enable=NO", "local_enable=YES",
        f"local_root={root}", "seccomp_sandbox=NO", "secure_chroot_dir=/var/run/vsftpd/empty",
        "pam_service_name=vsftpd", "xferlog_enable=NO", "connect_from_port_20=NO",
        "use_localtime=NO", "local_umask=022", f"write_enable={'YES' if write else 'NO'}",
        "pasv_enable=YES", "port_enable=YES", "idle_session_timeout=60",
        "data_connection_timeout=30", "accept_timeout=10", "connect_timeout=5",
    ]
    if listen_ipv6:
        addr6 = "::" if netns else "::ffff:127.0.0.1"
        lines += ["listen=NO", "listen_ipv6=YES", f"listen_address6={addr6}"]
    else:
        lines += ["listen=YES", "listen_ipv6=NO", f"listen_address={host}"]
    if pasv_address:
        lines.append(f"pasv_address={pasv_address}")
    if pasv_ports:
        lines += [f"pasv_min_port={pasv_ports[0]}", f"pasv_max_port={pasv_ports[1]}"]
    conf = root.parent / f"{root.name}.conf"
    conf.write_text("\n".join(lines) + "\n")
    with _running([str(peers.VSFTPD), str(conf)], host, port, root, netns, conf) as s:
        yield s


@contextmanager
def proftpd(host: str = "127.0.0.1", *, masquerade: str | None = None, write: bool = True,
            passive: tuple[int, int] | None = None, netns: str | None = None,
            port: int | None = None) -> Iterator[Running]:
    peers._need(peers.PROFTPD, "ProFTPD")
    ensure_user()
    root = Path(tempfile.mkdtemp(prefix="doctor-pro-"))
    os.chmod(root, 0o777)
    (root / "hello.txt").write_text("hello\n")
    run = root.parent / f"{root.name}.run"
    run.mkdir()
    port = port or free_port("127.0.0.1")
    lines = [
        "ServerType standalone", 'ServerName "natftp doctor test"', f"Port {port}",
        f"DefaultAddress {host}", "SocketBindTight on", "UseIPv6 off", "User nobody",
        "Group nogroup", f"PidFile {run}/pid", f"ScoreboardFile {run}/score",
        "WtmpLog off", "DelayEngine off", "TransferLog none", "RequireValidShell on",
        "AuthOrder mod_auth_unix.c", f"DefaultRoot {root}", "UseReverseDNS off",
        "<IfModule mod_ident.c>", "  IdentLookups off", "</IfModule>",
    ]
    if masquerade:
        lines.append(f"MasqueradeAddress {masquerade}")
    if passive:
        lines.append(f"PassivePorts {passive[0]} {passive[1]}")
    if not write:
        lines += ["<Limit WRITE>", "  DenyAll", "</Limit>"]
    conf = run / "proftpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    with _running([str(peers.PROFTPD), "-n", "-q", "-c", str(conf)], host, port, root, netns,
                  run) as s:
        yield s
