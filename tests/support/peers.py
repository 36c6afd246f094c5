"""Real FTP servers as test peers: vsftpd, ProFTPD, Pure-FTPd and pyftpdlib.

Each context manager starts one real server process on loopback (free high ports), waits
(bounded) until its 220 banner is readable, yields a :class:`Peer`, and on exit kills the
process group it started (by PID; the server is started in its own session). When the
server fails to come up, or the ``with`` body raises, the server's log is printed.

Where the binaries come from (``scripts/setup-system.sh`` installs them; a missing one is
an error with that hint, never a skip):

- vsftpd: the Debian package; it logs in the local user ``natftptest`` through PAM.
- ProFTPD and Pure-FTPd: their Debian packages conflict with vsftpd, so they are unpacked
  (``dpkg -x``) under ``/opt/natftp-peers`` and run from their own config with virtual users
  (ProFTPD ``AuthUserFile``, Pure-FTPd ``puredb``) mapped to the uid of ``natftptest``.
- pyftpdlib: a subprocess of this Python (threaded server).

Options (all servers): ``user``/``password`` (vsftpd: fixed, it needs the system user),
``root`` (default: a fresh directory, removed afterwards; chowned to natftptest; for
vsftpd every parent must be traversable by natftptest, so not pytest's tmp_path), ``passive_ports``
(default: a free range of 8), ``masquerade`` (address in the 227 reply), ``write``,
``epsv``/``pasv``. What each server can refuse:

============  ==========================  ==================================
server        ``epsv=False``              ``pasv=False``
============  ==========================  ==================================
pyftpdlib     EPSV removed: ``500``       PASV removed: ``500``
ProFTPD       ``<Limit EPSV> DenyAll``    ``<Limit PASV> DenyAll``
Pure-FTPd     ``-b`` (IPv4 control only;  ``-N``: refuses PASV *and* EPSV
              also other quirk modes)
vsftpd        not possible (ValueError)   ``pasv_enable=NO``: PASV *and* EPSV
============  ==========================  ==================================

``write=False``: pyftpdlib perm ``elr``; ProFTPD ``<Limit WRITE> DenyAll``; vsftpd
``write_enable=NO``; Pure-FTPd has no switch: the root is owned by root (mode 0755) so the
virtual user's uid cannot write. ``listen_ipv6`` exists for vsftpd only.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

PEERS_DIR = Path(os.environ.get("NATFTP_PEERS_DIR", "/opt/natftp-peers"))
VSFTPD = Path("/usr/sbin/vsftpd")
PROFTPD = PEERS_DIR / "proftpd-core/usr/sbin/proftpd"
PUREFTPD = PEERS_DIR / "pure-ftpd/usr/sbin/pure-ftpd"
PURE_PW = PEERS_DIR / "pure-ftpd/usr/bin/pure-pw"
VSFTPD_CHROOT = Path("/var/run/vsftpd/empty")

SYSTEM_USER = "natftptest"  # created by scripts/setup-system.sh
SYSTEM_PASSWORD = "natftptest-pw"
DEFAULT_USER = "natftptest"
DEFAULT_PASSWORD = "natftptest-pw"

KINDS = ("vsftpd", "proftpd", "pure-ftpd", "pyftpdlib")
START_TIMEOUT = 10.0  # seconds until the banner must be readable
PORT_LOW, PORT_HIGH = 20000, 32000  # below Linux's ephemeral range (32768-60999)
SETUP_HINT = "run `make system` (bash scripts/setup-system.sh) as root"


class PeerError(RuntimeError):
    """A peer server could not be started."""


@dataclass
class Peer:
    kind: str
    host: str
    port: int
    user: str
    password: str
    root: Path
    passive_ports: tuple[int, int]
    pid: int
    log: Path
    masquerade: str | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"ftp://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{h}:{self.port}/"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"


# --- ports -----------------------------------------------------------------------------

def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _is_free(host: str, port: int) -> bool:
    with socket.socket(_family(host)) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now on ``host`` (random, below the ephemeral range)."""
    for _ in range(200):
        port = random.randint(PORT_LOW, PORT_HIGH)
        if _is_free(host, port):
            return port
    raise PeerError(f"no free port on {host} in {PORT_LOW}-{PORT_HIGH}")


def free_port_range(host: str = "127.0.0.1", count: int = 8,
                    avoid: Sequence[int] = ()) -> tuple[int, int]:
    """``count`` consecutive ports, all free now (inclusive bounds)."""
    for _ in range(200):
        low = random.randint(PORT_LOW, PORT_HIGH - count)
        ports = range(low, low + count)
        if not set(ports) & set(avoid) and all(_is_free(host, p) for p in ports):
            return low, low + count - 1
    raise PeerError(f"no {count} free consecutive ports on {host}")


# --- process handling ------------------------------------------------------------------

def read_banner(host: str, port: int, timeout: float = 2.0) -> str:
    """Connect and read the (possibly multi-line) 220 greeting; raise OSError if none."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        data = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            text = data.decode("utf-8", "replace")
            last = text.rstrip("\r\n").splitlines()[-1] if text.strip() else ""
            if text.endswith("\n") and re.match(r"^\d{3} ", last):
                if not last.startswith("220"):
                    raise OSError(f"greeting is not 220: {text!r}")
                return text
        raise OSError(f"incomplete greeting: {data!r}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the server and the session processes it forked: its own process group, whose
    id is its PID because it was started with start_new_session."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _print_log(kind: str, log: Path, why: str) -> None:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = "(no log file)"
    tail = text[-8000:]
    print(f"\n----- {kind} log ({log}) after {why} -----\n{tail}\n----- end of {kind} log -----",
          file=sys.stderr)


@contextmanager
def _run(kind: str, cmd: list[str], peer: Peer, cwd: Path,
         env: dict[str, str] | None = None) -> Iterator[Peer]:
    with open(peer.log, "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                                env=env)
    peer.proc, peer.pid = proc, proc.pid
    try:
        end = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while True:
            if proc.poll() is not None:
                msg = (f"{kind} exited with {proc.returncode} at start: {' '.join(cmd)}\n"
                       f"{peer.log_text()[-2000:]}")
                if not _is_free(peer.host, peer.port):
                    raise _EarlyExit(msg)  # its port was taken meanwhile: try other ports
                _print_log(kind, peer.log, f"exit {proc.returncode} at start")
                raise PeerError(msg)
            try:
                read_banner(peer.host, peer.port)
                break
            except OSError as e:
                last = e
            if time.monotonic() > end:
                _print_log(kind, peer.log, "no banner")
                raise PeerError(f"{kind} on {peer.host}:{peer.port} gave no 220 banner within "
                                f"{START_TIMEOUT} s ({last})")
            time.sleep(0.05)
        try:
            yield peer
        except BaseException:
            _print_log(kind, peer.log, "a failure")
            raise
    finally:
        _kill(proc)


class _EarlyExit(PeerError):
    """The server died at start because its port was taken in between: retried."""


def _with_retries(start: Callable[[], contextlib.AbstractContextManager[Peer]],
                  attempts: int = 3) -> Iterator[Peer]:
    for i in range(attempts):
        cm = start()
        try:
            peer = cm.__enter__()
        except _EarlyExit:
            if i == attempts - 1:
                raise
            continue
        try:
            yield peer
        except BaseException:
            if not cm.__exit__(*sys.exc_info()):
                raise
        else:
            cm.__exit__(None, None, None)
        return


# --- common preparation ----------------------------------------------------------------

def _need(path: Path, what: str) -> None:
    if not os.access(path, os.X_OK):
        raise PeerError(f"{what} not found at {path}: {SETUP_HINT}")


def _check_traversable(root: Path, owner: pwd.struct_passwd) -> None:
    """vsftpd changes into local_root as the user: every parent must let it pass."""
    for d in Path(root).resolve().parents:
        st = d.stat()
        if not (st.st_mode & 0o001 or (st.st_uid == owner.pw_uid and st.st_mode & 0o100)):
            raise PeerError(f"vsftpd: {SYSTEM_USER} cannot reach {root}: {d} is mode "
                            f"{st.st_mode & 0o777:o}; use the default root (not tmp_path)")


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PeerError(f"local user {SYSTEM_USER} is missing: {SETUP_HINT}") from None


@contextmanager
def _state(kind: str, root: Path | None, owner: pwd.struct_passwd | None,
           writable: bool) -> Iterator[tuple[Path, Path]]:
    """A state directory (config, log, pid) and the served root. A root we create is
    removed afterwards; a given one is kept (but its owner/mode are set)."""
    state = Path(tempfile.mkdtemp(prefix=f"natftp-peer-{kind}-"))
    os.chmod(state, 0o755)  # ProFTPD refuses logs in world-writable directories
    served = state / "root" if root is None else Path(root)
    served.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        if writable:
            os.chown(served, owner.pw_uid, owner.pw_gid)
        else:
            os.chown(served, 0, 0)
        os.chmod(served, 0o755)
    try:
        yield state, served
    finally:
        # a root that was given (a test's tmp_path) stays for the test to inspect
        shutil.rmtree(state, ignore_errors=True)


def _ports(host: str, port: int | None,
           passive_ports: tuple[int, int] | None) -> tuple[int, tuple[int, int]]:
    p = port or free_port(host)
    rng = passive_ports or free_port_range(host, 8, avoid=(p,))
    return p, rng


# --- vsftpd ----------------------------------------------------------------------------

@contextmanager
def vsftpd(*, host: str = "127.0.0.1", port: int | None = None, root: Path | None = None,
           passive_ports: tuple[int, int] | None = None, masquerade: str | None = None,
           epsv: bool = True, pasv: bool = True, write: bool = True,
           listen_ipv6: bool = False, extra: Sequence[str] = ()) -> Iterator[Peer]:
    """vsftpd 3 (Debian) in the foreground (background=NO), local user natftptest chrooted
    to ``root``. ``listen_ipv6``: an IPv6 socket (listen_address6 = ``host`` if IPv6, else
    ``::ffff:host``) that also takes IPv4 through mapped addresses."""
    if not epsv and pasv:
        raise ValueError("vsftpd cannot refuse EPSV alone: pasv_enable=NO turns off PASV and "
                         "EPSV together")
    _need(VSFTPD, "vsftpd")
    owner = _system_user()
    if root is not None:
        _check_traversable(Path(root), owner)
    VSFTPD_CHROOT.mkdir(parents=True, exist_ok=True)

    def start() -> contextlib.AbstractContextManager[Peer]:
        return _vsftpd_once(host, port, root, passive_ports, masquerade, pasv, write,
                            listen_ipv6, extra, owner)

    yield from _with_retries(start)


@contextmanager
def _vsftpd_once(host: str, port: int | None, root: Path | None,
                 passive_ports: tuple[int, int] | None, masquerade: str | None, pasv: bool,
                 write: bool, listen_ipv6: bool, extra: Sequence[str],
                 owner: pwd.struct_passwd) -> Iterator[Peer]:
    port, rng = _ports(host, port, passive_ports)
    with _state("vsftpd", root, owner, write) as (state, served):
        log = state / "vsftpd.log"
        lines = [
            "background=NO", f"listen_port={port}", "anonymous_enable=NO", "local_enable=YES",
            f"local_root={served}", "chroot_local_user=YES", "allow_writeable_chroot=YES",
            "seccomp_sandbox=NO", f"secure_chroot_dir={VSFTPD_CHROOT}",
            "pam_service_name=vsftpd", "userlist_enable=NO", "tcp_wrappers=NO",
            "syslog_enable=NO", f"vsftpd_log_file={log}", "xferlog_enable=YES",
            "xferlog_std_format=NO", "log_ftp_protocol=YES", "dual_log_enable=NO",
            "connect_from_port_20=NO", "use_localtime=NO", "local_umask=022",
            f"write_enable={'YES' if write else 'NO'}", f"pasv_enable={'YES' if pasv else 'NO'}",
            "port_enable=YES", f"pasv_min_port={rng[0]}", f"pasv_max_port={rng[1]}",
            "idle_session_timeout=120", "data_connection_timeout=60", "accept_timeout=20",
            "connect_timeout=10", "max_per_ip=0", "max_clients=0",
        ]
        if listen_ipv6:
            addr6 = host if ":" in host else f"::ffff:{host}"
            lines += ["listen=NO", "listen_ipv6=YES", f"listen_address6={addr6}"]
        else:
            lines += ["listen=YES", "listen_ipv6=NO", f"listen_address={host}"]
        if masquerade:
            lines += [f"pasv_address={masquerade}", "pasv_addr_resolve=NO"]
        lines += list(extra)
        conf = state / "vsftpd.conf"
        conf.write_text("\n".join(lines) + "\n")
        os.chmod(conf, 0o600)  # vsftpd wants its config owned by root
        peer = Peer("vsftpd", host, port, SYSTEM_USER, SYSTEM_PASSWORD, served, rng, 0, log,
                    masquerade)
        with _run("vsftpd", [str(VSFTPD), str(conf)], peer, state) as p:
            yield p


# --- ProFTPD ---------------------------------------------------------------------------

def _crypt_sha512(password: str) -> str:
    r = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n",
                       capture_output=True, text=True, check=True, timeout=10)
    return r.stdout.strip()


@contextmanager
def proftpd(*, host: str = "127.0.0.1", port: int | None = None, root: Path | None = None,
            user: str = DEFAULT_USER, password: str = DEFAULT_PASSWORD,
            passive_ports: tuple[int, int] | None = None, masquerade: str | None = None,
            epsv: bool = True, pasv: bool = True, write: bool = True,
            extra: Sequence[str] = ()) -> Iterator[Peer]:
    """ProFTPD 1.3.8 (unpacked proftpd-core) standalone in the foreground (-n), a virtual
    user from an AuthUserFile (SHA-512 crypt hash, uid of natftptest), DefaultRoot ~, no PAM,
    no ident or reverse DNS. ``extra``: more config lines (AllowOverwrite is on, as in
    Debian's default config)."""
    _need(PROFTPD, "ProFTPD (unpacked proftpd-core)")
    owner = _system_user()

    def start() -> contextlib.AbstractContextManager[Peer]:
        return _proftpd_once(host, port, root, user, password, passive_ports, masquerade,
                             epsv, pasv, write, extra, owner)

    yield from _with_retries(start)


@contextmanager
def _proftpd_once(host: str, port: int | None, root: Path | None, user: str, password: str,
                  passive_ports: tuple[int, int] | None, masquerade: str | None, epsv: bool,
                  pasv: bool, write: bool, extra: Sequence[str],
                  owner: pwd.struct_passwd) -> Iterator[Peer]:
    port, rng = _ports(host, port, passive_ports)
    with _state("proftpd", root, owner, write) as (state, served):
        log = state / "proftpd.log"
        uid, gid = owner.pw_uid, owner.pw_gid
        passwd = state / "ftpd.passwd"
        passwd.write_text(f"{user}:{_crypt_sha512(password)}:{uid}:{gid}::{served}:/bin/bash\n")
        group = state / "ftpd.group"
        group.write_text(f"{SYSTEM_USER}:x:{gid}:{user}\n")
        for f in (passwd, group):
            os.chmod(f, 0o600)
        lines = [
            "ServerType standalone", 'ServerName "natftp test peer"', f"Port {port}",
            f"DefaultAddress {host}", "SocketBindTight on",
            f"UseIPv6 {'on' if ':' in host else 'off'}",
            f"User {SYSTEM_USER}", f"Group {owner.pw_name}", "Umask 022",
            f"PidFile {state}/proftpd.pid", f"ScoreboardFile {state}/proftpd.scoreboard",
            f"SystemLog {log}", f"TransferLog {state}/xfer.log", "WtmpLog off",
            "DelayEngine off", "UseReverseDNS off", "UseFtpUsers off",
            "<IfModule mod_ident.c>", "  IdentLookups off", "</IfModule>",
            "<IfModule mod_ctrls.c>", "  ControlsEngine off", "</IfModule>",
            "<IfModule mod_auth_pam.c>", "  AuthPAM off", "</IfModule>",
            "AuthOrder mod_auth_file.c", f"AuthUserFile {passwd}", f"AuthGroupFile {group}",
            "RequireValidShell off", "DefaultRoot ~", "AllowOverwrite on",
            "MaxInstances 50", "TimeoutIdle 120", "TimeoutNoTransfer 120",
            f"PassivePorts {rng[0]} {rng[1]}",
        ]
        if masquerade:
            lines.append(f"MasqueradeAddress {masquerade}")
        refused = [c for c, on in (("EPSV", epsv), ("PASV", pasv)) if not on]
        if refused:
            lines += [f"<Limit {' '.join(refused)}>", "  DenyAll", "</Limit>"]
        if not write:
            lines += ["<Limit WRITE>", "  DenyAll", "</Limit>"]
        lines += list(extra)
        conf = state / "proftpd.conf"
        conf.write_text("\n".join(lines) + "\n")
        peer = Peer("proftpd", host, port, user, password, served, rng, 0, log, masquerade)
        with _run("proftpd", [str(PROFTPD), "-n", "-c", str(conf)], peer, state) as p:
            yield p


# --- Pure-FTPd -------------------------------------------------------------------------

@contextmanager
def pureftpd(*, host: str = "127.0.0.1", port: int | None = None, root: Path | None = None,
             user: str = DEFAULT_USER, password: str = DEFAULT_PASSWORD,
             passive_ports: tuple[int, int] | None = None, masquerade: str | None = None,
             epsv: bool = True, pasv: bool = True, write: bool = True,
             extra_args: Sequence[str] = ()) -> Iterator[Peer]:
    """Pure-FTPd 1.0.50 (unpacked pure-ftpd) in the foreground, a virtual user in a puredb
    made with its own ``pure-pw mkdb`` from a SHA-512 crypt entry (uid of natftptest,
    chrooted to ``root``). -S host,port, -p range, -P masquerade, -N no passive at all,
    -b no EPSV over IPv4 (plus Pure-FTPd's other "broken client" compatibility changes)."""
    _need(PUREFTPD, "Pure-FTPd (unpacked pure-ftpd)")
    _need(PURE_PW, "pure-pw (unpacked pure-ftpd)")
    owner = _system_user()

    def start() -> contextlib.AbstractContextManager[Peer]:
        return _pureftpd_once(host, port, root, user, password, passive_ports, masquerade,
                              epsv, pasv, write, extra_args, owner)

    yield from _with_retries(start)


@contextmanager
def _pureftpd_once(host: str, port: int | None, root: Path | None, user: str, password: str,
                   passive_ports: tuple[int, int] | None, masquerade: str | None, epsv: bool,
                   pasv: bool, write: bool, extra_args: Sequence[str],
                   owner: pwd.struct_passwd) -> Iterator[Peer]:
    port, rng = _ports(host, port, passive_ports)
    with _state("pure-ftpd", root, owner, write) as (state, served):
        log = state / "pure-ftpd.log"
        pdb = state / "pureftpd.pdb"
        pw_file = state / "pureftpd.passwd"
        # A SHA-512 crypt hash written directly: `pure-pw useradd` would make an argon2id
        # hash that costs ~3 s at creation and at every login.
        pw_file.write_text(f"{user}:{_crypt_sha512(password)}:{owner.pw_uid}:{owner.pw_gid}"
                           f"::{served}/./::::::::::::\n")
        os.chmod(pw_file, 0o600)
        r = subprocess.run([str(PURE_PW), "mkdb", str(pdb), "-f", str(pw_file)],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0 or not pdb.exists():
            raise PeerError(f"pure-pw mkdb failed ({r.returncode}): {r.stdout} {r.stderr}")
        cmd = [str(PUREFTPD), "-S", f"{host},{port}", "-l", f"puredb:{pdb}",
               "-E",  # no anonymous
               "-H",  # no reverse DNS
               "-u", "1",  # any non-root uid may log in
               "-p", f"{rng[0]}:{rng[1]}", "-c", "50", "-C", "50", "-I", "2",
               "-O", f"clf:{state}/xfer.log", "-g", str(state / "pure-ftpd.pid")]
        cmd.append("-6" if ":" in host else "-4")
        if masquerade:
            cmd += ["-P", masquerade]
        if not pasv:
            cmd.append("-N")
        if not epsv:
            cmd.append("-b")
        cmd += list(extra_args)
        peer = Peer("pure-ftpd", host, port, user, password, served, rng, 0, log, masquerade)
        with _run("pure-ftpd", cmd, peer, state) as p:
            yield p


# --- pyftpdlib -------------------------------------------------------------------------

_PYFTPD_SCRIPT = r"""
import json, logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer, ThreadedFTPServer

cfg = json.loads(sys.argv[1])
logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(asctime)s %(levelname)s %(message)s")
auth = DummyAuthorizer()
auth.add_user(cfg["user"], cfg["password"], cfg["root"], perm=cfg["perm"])

class Handler(FTPHandler):
    proto_cmds = {k: v for k, v in FTPHandler.proto_cmds.items() if k not in cfg["refuse"]}

Handler.authorizer = auth
Handler.passive_ports = list(range(cfg["passive"][0], cfg["passive"][1] + 1))
Handler.masquerade_address = cfg["masquerade"]
Handler.banner = "natftp test peer (pyftpdlib) ready."
Handler.timeout = 120
server_class = ThreadedFTPServer if cfg["threaded"] else FTPServer
server = server_class((cfg["host"], cfg["port"]), Handler)
server.max_cons = cfg["max_cons"]
server.max_cons_per_ip = 0
server.serve_forever()
"""


@contextmanager
def pyftpdlib(*, host: str = "127.0.0.1", port: int | None = None, root: Path | None = None,
              user: str = DEFAULT_USER, password: str = DEFAULT_PASSWORD,
              passive_ports: tuple[int, int] | None = None, masquerade: str | None = None,
              epsv: bool = True, pasv: bool = True, write: bool = True,
              perm: str | None = None, threaded: bool = True,
              max_cons: int = 64) -> Iterator[Peer]:
    """pyftpdlib's threaded server as a subprocess (so it is killed by PID). ``epsv`` /
    ``pasv`` False remove the command from the handler (the server answers 500).
    ``threaded=False``: its default single-threaded epoll server (the benchmark's);
    ``max_cons``: sessions it accepts at once."""

    def start() -> contextlib.AbstractContextManager[Peer]:
        return _pyftpdlib_once(host, port, root, user, password, passive_ports, masquerade,
                               epsv, pasv, write, perm, threaded, max_cons)

    yield from _with_retries(start)


@contextmanager
def _pyftpdlib_once(host: str, port: int | None, root: Path | None, user: str, password: str,
                    passive_ports: tuple[int, int] | None, masquerade: str | None, epsv: bool,
                    pasv: bool, write: bool, perm: str | None, threaded: bool,
                    max_cons: int) -> Iterator[Peer]:
    port, rng = _ports(host, port, passive_ports)
    with _state("pyftpdlib", root, None, write) as (state, served):
        log = state / "pyftpdlib.log"
        cfg: dict[str, Any] = {
            "host": host, "port": port, "user": user, "password": password,
            "root": str(served), "perm": perm or ("elradfmwMT" if write else "elr"),
            "passive": list(rng), "masquerade": masquerade,
            "refuse": [c for c, on in (("EPSV", epsv), ("PASV", pasv)) if not on],
            "threaded": threaded, "max_cons": max_cons,
        }
        peer = Peer("pyftpdlib", host, port, user, password, served, rng, 0, log, masquerade)
        cmd = [sys.executable, "-c", _PYFTPD_SCRIPT, json.dumps(cfg)]
        with _run("pyftpdlib", cmd, peer, state) as p:
            yield p


STARTERS: dict[str, Callable[..., contextlib.AbstractContextManager[Peer]]] = {
    "vsftpd": vsftpd, "proftpd": proftpd, "pure-ftpd": pureftpd, "pyftpdlib": pyftpdlib,
}


@contextmanager
def peer_server(kind: str, **options: Any) -> Iterator[Peer]:
    """Start the server named ``kind`` (one of KINDS) with the given options."""
    try:
        starter = STARTERS[kind]
    except KeyError:
        raise ValueError(f"unknown peer {kind!r}; one of {', '.join(KINDS)}") from None
    with starter(**options) as peer:
        yield peer


# --- pytest fixtures (imported by tests/conftest.py) -----------------------------------

@pytest.fixture
def make_peer() -> Iterator[Callable[..., Peer]]:
    """Factory: ``make_peer("proftpd", masquerade="127.0.0.2")`` starts a server that is
    stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        def factory(kind: str, **options: Any) -> Peer:
            return stack.enter_context(peer_server(kind, **options))

        yield factory


# The served root is a fresh directory beside the server's state (removed afterwards), not
# tmp_path: vsftpd enters it as the user natftptest, who cannot pass pytest's 0700 dirs.

@pytest.fixture(params=KINDS)
def ftp_peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    """Each real server in turn, writable, default options, serving a fresh directory."""
    with peer_server(request.param) as peer:
        yield peer


@pytest.fixture
def vsftpd_peer() -> Iterator[Peer]:
    with vsftpd() as peer:
        yield peer


@pytest.fixture
def proftpd_peer() -> Iterator[Peer]:
    with proftpd() as peer:
        yield peer


@pytest.fixture
def pureftpd_peer() -> Iterator[Peer]:
    with pureftpd() as peer:
        yield peer


@pytest.fixture
def pyftpdlib_peer() -> Iterator[Peer]:
    with pyftpdlib() as peer:
        yield peer
