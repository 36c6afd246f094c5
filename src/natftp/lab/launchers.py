"""Server launchers: start an FTP server inside a lab namespace (pluggable into the matrix).

A launcher is any callable ``(lab, spec) -> subprocess.Popen`` that starts a server in
``spec.node`` listening on ``spec.listen:spec.port`` with user ``spec.user`` /
``spec.password`` rooted at ``spec.root``, passive ports ``spec.passive_ports`` and, when
``spec.masquerade`` is set, advertising that address in PASV replies. It must return
once the server accepts connections (use :func:`wait_listening`), start it with
``lab.spawn`` (so teardown kills it) and raise :class:`LauncherError` when it cannot.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natftp.lab.core import Lab


class LauncherError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerSpec:
    node: str
    listen: str
    port: int
    passive_ports: tuple[int, int]
    root: Path
    user: str
    password: str
    masquerade: str | None = None


ServerLauncher = Callable[[Lab, ServerSpec], "subprocess.Popen[Any]"]

PYTHON = sys.executable


def wait_listening(lab: Lab, spec: ServerSpec, proc: subprocess.Popen[Any],
                   timeout: float = 8.0) -> None:
    """Return when a TCP listener on spec.port exists in spec.node; raise if proc dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log_path(spec).read_text(errors="replace") if log_path(spec).exists() else ""
            raise LauncherError(f"server in {spec.node} exited ({proc.returncode}) before "
                                f"listening on {spec.port}: {str(err).strip()[-2000:]}")
        r = lab.run(spec.node, ["ss", "-Hltn", f"sport = :{spec.port}"], timeout=5)
        if r.stdout.strip():
            return
        time.sleep(0.05)
    lab.stop(proc)
    raise LauncherError(f"server in {spec.node} not listening on {spec.port} after "
                        f"{timeout:.0f} s")


def log_path(spec: ServerSpec) -> Path:
    """Where a launcher sends the server's stdout+stderr (next to its root)."""
    return spec.root.with_name(spec.root.name + f"-{spec.node}.log")


def spawn_logged(lab: Lab, spec: ServerSpec, cmd: list[str]) -> subprocess.Popen[Any]:
    """lab.spawn with output to :func:`log_path` (a pipe nobody reads would fill up)."""
    with open(log_path(spec), "ab") as log:
        return lab.spawn(spec.node, cmd, stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT)


PYFTPDLIB_SCRIPT = r"""
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import ThreadedFTPServer as FTPServer
root, host, port, user, pw, lo, hi, masq = sys.argv[1:9]
auth = DummyAuthorizer()
auth.add_user(user, pw, root, perm="elradfmwMT")
class H(FTPHandler):
    pass
H.authorizer = auth
H.passive_ports = range(int(lo), int(hi) + 1)
if masq:
    H.masquerade_address = masq
H.timeout = 30
import logging, os
if os.environ.get("NATFTP_LAB_DEBUG"):
    logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(message)s")
srv = FTPServer((host, int(port)), H)
srv.max_cons = 256
print("READY", flush=True)
srv.serve_forever(timeout=0.5)
"""


def pyftpdlib_launcher(lab: Lab, spec: ServerSpec) -> subprocess.Popen[Any]:
    """pyftpdlib (default handler; ``masquerade_address`` when spec.masquerade)."""
    p = spawn_logged(lab, spec, [PYTHON, "-c", PYFTPDLIB_SCRIPT, str(spec.root), spec.listen,
                                 str(spec.port), spec.user, spec.password,
                                 str(spec.passive_ports[0]), str(spec.passive_ports[1]),
                                 spec.masquerade or ""])
    wait_listening(lab, spec, p)
    return p


def natftp_launcher(lab: Lab, spec: ServerSpec) -> subprocess.Popen[Any]:
    """``natftp serve ROOT --listen HOST:PORT --user U:P --passive-ports L-H [--masquerade]``."""
    cmd = [PYTHON, "-m", "natftp", "serve", str(spec.root), "--listen",
           f"{spec.listen}:{spec.port}", "--user", f"{spec.user}:{spec.password}",
           "--passive-ports", f"{spec.passive_ports[0]}-{spec.passive_ports[1]}",
           # a lab namespace is root's playground: serving beyond loopback as root is meant
           "--allow-root"]
    if spec.masquerade:
        cmd += ["--masquerade", spec.masquerade]
    p = spawn_logged(lab, spec, cmd)
    wait_listening(lab, spec, p)
    return p


LAUNCHERS: dict[str, ServerLauncher] = {
    "pyftpdlib": pyftpdlib_launcher,
    "natftp": natftp_launcher,
}
