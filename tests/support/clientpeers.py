"""Helpers for the client's tests: pyftpdlib subprocesses, a counting forwarder, a
blackhole port, tree digests.

``start_peer(root, *opts)`` starts pyftpd_peer.py (beside this file) with the given options,
waits for its READY line and returns a :class:`Server`; everything started is killed by
PID at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from natftp import tls

HERE = Path(__file__).parent
REPO = HERE.parent.parent
NATFTP = REPO / ".venv" / "bin" / "natftp"
USER, PASSWORD = "alice", "wonder land"


@dataclass
class Server:
    host: str
    port: int
    root: Path
    proc: subprocess.Popen[bytes]
    user: str = USER
    password: str = PASSWORD
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ftp://{self.user}:{quote(self.password)}@{self.host}:{self.port}/"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)


def start_peer(root: Path, *args: str, host: str = "127.0.0.1", port: int = 0) -> Server:
    cmd = [sys.executable, str(HERE / "pyftpd_peer.py"), "--root", str(root),
           "--listen", f"{host}:{port}", "--user", f"{USER}:{PASSWORD}", "--anonymous",
           "--permit-foreign", "--banner", "natftp client test server ready.",
           "--auth-failed-delay", "0.1", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    end = time.monotonic() + 10
    line = b""
    while time.monotonic() < end and not line.endswith(b"\n"):
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            b = os.read(proc.stdout.fileno(), 1)
            if not b:
                break
            line += b
    if not line.startswith(b"READY"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"pyftpdlib peer did not start: {line!r} {cmd}")
    return Server(host, int(line.split()[1]), root, proc, args=list(args))


def natftp(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `natftp` command as a user would (HOME is the working directory, so no
    ~/.netrc of the machine's is read); its output decoded."""
    e = {**os.environ, "HOME": str(cwd or Path.cwd()), **(env or {})}
    r = subprocess.run([str(NATFTP), *args], capture_output=True, cwd=cwd, env=e,
                       timeout=60, input=stdin)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(),
                                       r.stderr.decode())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tree(root: Path) -> None:
    """A tree with Japanese and space-containing names, files of a few sizes."""
    (root / "日本語 フォルダ" / "深い").mkdir(parents=True, exist_ok=True)
    (root / "with space").mkdir(exist_ok=True)
    (root / "empty dir").mkdir(exist_ok=True)
    (root / "top.txt").write_text("top\n")
    (root / "日本語 フォルダ" / "ファイル 1.txt").write_text("こんにちは\n" * 100)
    (root / "日本語 フォルダ" / "深い" / "データ.bin").write_bytes(os.urandom(300_000))
    (root / "with space" / "a b c.txt").write_bytes(b"")
    (root / "with space" / "big one.bin").write_bytes(os.urandom(1_000_000))


def tree_digest(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "dir" if p.is_dir() else sha256(p)
    return out


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Forwarder:
    """Listens on (host, port) and relays every connection to (to_host, to_port or the
    same port), counting them: proof of which address a client really connected to.
    ``sent`` keeps every byte the clients sent: proof of what crossed in the clear."""

    def __init__(self, host: str, port: int, to_host: str, to_port: int | None = None,
                 ) -> None:
        self.accepted = 0
        self.sent = bytearray()
        self._lock = threading.Lock()
        self._to = (to_host, to_port or port)
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = port
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                a, _ = self._sock.accept()
            except OSError:
                continue
            self.accepted += 1
            b = socket.create_connection(self._to, timeout=5)
            for x, y, keep in ((a, b, True), (b, a, False)):
                threading.Thread(target=self._pipe, args=(x, y, keep), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, keep: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if keep:
                    with self._lock:
                        self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


class Blackhole:
    """A port where connection attempts hang (a full accept queue: the kernel drops the
    SYNs), as a firewall that drops packets would make them."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.socket()
        self._sock.bind((host, port))
        self._sock.listen(0)
        self._fill: list[socket.socket] = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                c.connect((host, port))
            self._fill.append(c)
        time.sleep(0.1)

    def close(self) -> None:
        for c in self._fill:
            c.close()
        self._sock.close()


def self_signed(path: Path, name: str = "127.0.0.1") -> tuple[Path, str]:
    """A self-signed certificate for ``name`` (an address or a host name; natftp.tls
    makes it, as for the gateway) and its key in one PEM file, as pyftpdlib reads them;
    returns the path and the certificate's SHA-256 fingerprint (hex)."""
    cert, key = tls.self_signed(path.parent, (name,), stem=path.stem, common_name=name)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    path.write_bytes(key.read_bytes() + cert.read_bytes())
    cert.unlink()
    key.unlink()
    return path, hashlib.sha256(der).hexdigest()
