"""The NAT matrix: real FTP clients x (topology, path, helper, server configuration).

Rows are a client and a data-connection mode (curl, lftp, Python's ftplib; EPSV, PASV
trusting or ignoring the advertised address, active). Columns are a path through a lab
topology (a client node dialling a server node), the kernel FTP helper on or off, and a
server configuration (a :data:`~natftp.lab.launchers.ServerLauncher` plus whether it is
told its public address). Each cell does LIST + download + upload and checks the
content (sha256) on both ends, with a short timeout so a broken cell fails in seconds.

    result = run_matrix(["contest"], helpers=(False,), servers=[ServerConfig(
        "pyftpdlib+masq", pyftpdlib_launcher, masquerade=True)])
    print(result.to_markdown())
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from natftp.lab.core import Backend, Lab, require_root_and_tools
from natftp.lab.launchers import ServerLauncher, ServerSpec, pyftpdlib_launcher
from natftp.lab.topologies import TOPOLOGIES
from natftp.lab.topologies import Path as LabPath

USER = "labuser"
PASSWORD = "labpass"
DOWN_NAME = "down.bin"
DOWN_SIZE = 200_000


@dataclass(frozen=True)
class Cell:
    ok: bool
    detail: str  # "" when ok and nothing to say; otherwise why (short)
    seconds: float


@dataclass(frozen=True)
class CellCtx:
    lab: Lab
    client: str
    client_addr: str
    target: str
    port: int
    user: str
    password: str
    workdir: Path  # private to this cell
    server_root: Path
    down_name: str
    down_sha: str
    up_src: Path
    up_name: str
    up_sha: str
    timeout: float

    def run(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        t = self.timeout
        # the client's own time limit decides the cell; the outer one only catches a
        # command that cannot even start or be reaped (kept wide: a busy machine)
        return self.lab.run(self.client, ["timeout", "-k", "1", f"{t:g}", *cmd],
                            timeout=t + 20)


@dataclass(frozen=True)
class Row:
    name: str
    mode: Literal["passive", "active"]
    description: str
    run: Callable[[CellCtx], Cell]


@dataclass(frozen=True)
class ServerConfig:
    name: str  # shown in the column header, e.g. "pyftpdlib+masq"
    launcher: ServerLauncher
    masquerade: bool = False  # tell servers behind NAT their public address


@dataclass(frozen=True)
class Column:
    topology: str
    path: str
    helper: bool
    server: str

    @property
    def label(self) -> str:
        h = "helper" if self.helper else "no helper"
        return f"{self.topology}:{self.path} {h} {self.server}"


@dataclass
class MatrixResult:
    rows: list[Row]
    columns: list[Column] = field(default_factory=list)
    cells: dict[tuple[str, Column], Cell] = field(default_factory=dict)

    def cell(self, row: str, column: Column) -> Cell:
        return self.cells[(row, column)]

    def to_markdown(self) -> str:
        head = "| client / mode | " + " | ".join(c.label for c in self.columns) + " |"
        sep = "|---|" + "---|" * len(self.columns)
        lines = [head, sep]
        notes: list[str] = []
        for r in self.rows:
            cells = []
            for c in self.columns:
                cell = self.cells.get((r.name, c))
                if cell is None:
                    cells.append(" ")
                elif cell.ok:
                    cells.append("ok" + (f" ({cell.detail})" if cell.detail else ""))
                else:
                    notes.append(f"- {r.name} @ {c.label}: {cell.detail}")
                    cells.append(f"FAIL [{len(notes)}]")
            lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
        if notes:
            lines += ["", "Failures:", ""]
            lines += [n.replace("- ", f"- [{i}] ", 1) for i, n in enumerate(notes, 1)]
        return "\n".join(lines) + "\n"

    def rich_table(self) -> Any:
        from rich.table import Table

        t = Table(title="natftp NAT matrix", show_lines=True)
        t.add_column("client / mode")
        for c in self.columns:
            t.add_column(c.label.replace(" ", "\n"))
        for r in self.rows:
            vals = []
            for c in self.columns:
                cell = self.cells.get((r.name, c))
                if cell is None:
                    vals.append("")
                elif cell.ok:
                    vals.append("[green]ok[/green]" + (f" {cell.detail}" if cell.detail
                                                       else ""))
                else:
                    vals.append(f"[red]FAIL[/red] {cell.detail[:80]}")
            t.add_row(r.name, *vals)
        return t


# ------------------------------------------------------------------- checks


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verify(ctx: CellCtx, listing: str, local_down: Path, t0: float,
            note: str = "") -> Cell:
    dt = time.monotonic() - t0
    if ctx.down_name not in listing:
        return Cell(False, f"LIST did not show {ctx.down_name}", dt)
    if not local_down.exists() or _sha(local_down) != ctx.down_sha:
        return Cell(False, "download missing or corrupt (sha256 mismatch)", dt)
    up = ctx.server_root / ctx.up_name
    if not up.exists() or _sha(up) != ctx.up_sha:
        return Cell(False, "upload missing or corrupt on the server (sha256 mismatch)", dt)
    return Cell(True, note, dt)


def _last_lines(text: str, n: int = 2) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return " / ".join(lines[-n:])[:300]


# ------------------------------------------------------------------- curl


_TRYING = re.compile(r"^\*\s+Trying (\S+)", re.M)


def _curl_row(opts: Callable[[CellCtx], list[str]], want: str | None) -> Callable[
        [CellCtx], Cell]:
    def run(ctx: CellCtx) -> Cell:
        t0 = time.monotonic()
        # curl's FTP connect phase lasts until login: a cell given longer (a loaded
        # machine) gives it longer too
        base = ["curl", "-sS", "-v", "--connect-timeout", f"{max(3, ctx.timeout / 3):g}",
                "--max-time", f"{ctx.timeout:g}", *opts(ctx)]
        url = f"ftp://{ctx.user}:{ctx.password}@{ctx.target}:{ctx.port}/"
        local = ctx.workdir / "down"
        steps = [([*base, url], "LIST"),
                 ([*base, "-o", str(local), url + ctx.down_name], "download"),
                 ([*base, "-T", str(ctx.up_src), url + ctx.up_name], "upload")]
        listing = ""
        for cmd, what in steps:
            r = ctx.run(cmd)
            if what == "LIST":
                listing = r.stdout
            if r.returncode != 0:
                tried = _TRYING.findall(r.stderr)
                err = [x for x in r.stderr.splitlines() if x.startswith("curl:")]
                data = f"; data connection to {tried[-1]}" if len(tried) > 1 else ""
                return Cell(False, f"{what}: {(err or ['timeout'])[-1]}{data}",
                            time.monotonic() - t0)
            if want and what == "LIST" and not re.search(want, r.stderr, re.M):
                return Cell(False, f"curl did not use {want!r}: "
                            f"{_last_lines(r.stderr)}", time.monotonic() - t0)
        return _verify(ctx, listing, local, t0)

    return run


# ------------------------------------------------------------------- lftp


def _lftp_row(active: bool) -> Callable[[CellCtx], Cell]:
    def run(ctx: CellCtx) -> Cell:
        t0 = time.monotonic()
        local = ctx.workdir / "down"
        script = "; ".join([
            f"set net:timeout {max(3, ctx.timeout / 3):g}", "set net:max-retries 2",
            "set net:persist-retries 0",
            "set net:reconnect-interval-base 1", "set net:reconnect-interval-max 1",
            "set cmd:fail-exit yes", "set ftp:ssl-allow no", "set xfer:clobber on",
            f"set ftp:passive-mode {'off' if active else 'on'}",
            f"open -u {ctx.user},{ctx.password} -p {ctx.port} ftp://{ctx.target}",
            "ls", f"get {ctx.down_name} -o {local}", f"put {ctx.up_src} -o {ctx.up_name}",
        ])
        r = ctx.run(["lftp", "-d", "-c", script])
        dbg = r.stdout + r.stderr
        sent = re.findall(r"^---> (PASV|EPSV|PORT|EPRT)", dbg, re.M)
        used = "/".join(dict.fromkeys(sent))
        if r.returncode != 0:
            return Cell(False, f"lftp exit {r.returncode} (used {used or 'nothing'}): "
                        f"{_last_lines(r.stderr)}", time.monotonic() - t0)
        if active and ({"PASV", "EPSV"} & set(sent)):
            return Cell(False, f"lftp silently switched to passive ({used})",
                        time.monotonic() - t0)
        return _verify(ctx, r.stdout, local, t0)

    return run


# ------------------------------------------------------------------- ftplib


FTPLIB_SCRIPT = r"""
import ftplib, json, sys
host, port, user, pw, mode, down, local, up_src, up_name, t = sys.argv[1:11]
f = ftplib.FTP()
f.connect(host, int(port), timeout=float(t))
f.login(user, pw)
if mode == "trust":
    f.trust_server_pasv_ipv4_address = True
if mode == "active":
    f.set_pasv(False)
lines = []
f.retrlines("LIST", lines.append)
with open(local, "wb") as fh:
    f.retrbinary("RETR " + down, fh.write)
with open(up_src, "rb") as fh:
    f.storbinary("STOR " + up_name, fh)
f.quit()
print("\n".join(lines))
"""


def _ftplib_row(mode: str) -> Callable[[CellCtx], Cell]:
    def run(ctx: CellCtx) -> Cell:
        t0 = time.monotonic()
        local = ctx.workdir / "down"
        r = ctx.run([sys.executable, "-c", FTPLIB_SCRIPT, ctx.target, str(ctx.port),
                     ctx.user, ctx.password, mode, ctx.down_name, str(local),
                     str(ctx.up_src), ctx.up_name, "4"])
        if r.returncode != 0:
            why = _last_lines(r.stderr, 1) or f"exit {r.returncode} (timeout)"
            return Cell(False, why, time.monotonic() - t0)
        return _verify(ctx, r.stdout, local, t0)

    return run


ROWS: list[Row] = [
    Row("curl EPSV", "passive", "curl default: EPSV (229, port only)",
        _curl_row(lambda c: [], r"^< 229")),
    Row("curl PASV trust", "passive", "curl --disable-epsv --no-ftp-skip-pasv-ip: "
        "connects to the address in the 227", _curl_row(
            lambda c: ["--disable-epsv", "--no-ftp-skip-pasv-ip"], r"^< 227")),
    Row("curl PASV", "passive", "curl --disable-epsv: ignores the 227 address, reuses the "
        "control address (default since 7.74)", _curl_row(
            lambda c: ["--disable-epsv"], r"^< 227")),
    Row("curl active", "active", "curl --ftp-port <client address>: EPRT/PORT",
        _curl_row(lambda c: ["--ftp-port", c.client_addr], r"^> (EPRT|PORT)")),
    Row("lftp", "passive", "lftp default (PASV; replaces a private 227 address when the "
        "control address is public)", _lftp_row(False)),
    Row("lftp active", "active", "lftp set ftp:passive-mode off; red if lftp fell back to "
        "passive (read from lftp -d)", _lftp_row(True)),
    Row("ftplib", "passive", "Python ftplib default (PASV, ignores the 227 address)",
        _ftplib_row("default")),
    Row("ftplib PASV trust", "passive", "ftplib trust_server_pasv_ipv4_address = True",
        _ftplib_row("trust")),
    Row("ftplib active", "active", "ftplib set_pasv(False): PORT with its own address",
        _ftplib_row("active")),
]
ROWS_BY_NAME = {r.name: r for r in ROWS}

DEFAULT_SERVERS = [
    ServerConfig("pyftpdlib", pyftpdlib_launcher, masquerade=False),
    ServerConfig("pyftpdlib+masq", pyftpdlib_launcher, masquerade=True),
]


# ------------------------------------------------------------------- runner


def _public_of(topo_paths: Iterable[LabPath], node: str) -> str | None:
    """The address a server behind NAT should advertise (None: it is on the internet)."""
    for p in topo_paths:
        if p.server == node and p.public is not None:
            return p.public
    return None


def run_matrix(topologies: Sequence[str] = ("contest",),
               helpers: Sequence[bool] = (False, True),
               servers: Sequence[ServerConfig] = tuple(DEFAULT_SERVERS),
               rows: Sequence[Row] = tuple(ROWS), *, paths: Sequence[str] | None = None,
               timeout: float = 8.0, backend: Backend = "nftables", workers: int = 9,
               progress: Callable[[Column, MatrixResult], None] | None = None
               ) -> MatrixResult:
    """Run every row in every column; returns all cells (never raises for a red cell)."""
    require_root_and_tools(("curl", "lftp", "timeout"))
    result = MatrixResult(rows=list(rows))
    tmp = Path(tempfile.mkdtemp(prefix="natftp-matrix-"))
    try:
        for tname in topologies:
            topo = TOPOLOGIES[tname]
            with Lab.build(topo, helper=False, backend=backend) as lab:
                for helper in helpers:
                    lab.set_helper(helper)
                    for sc in servers:
                        _run_columns(lab, helper, sc, result, rows, paths, timeout, tmp,
                                     workers, progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _run_columns(lab: Lab, helper: bool, sc: ServerConfig, result: MatrixResult,
                 rows: Sequence[Row], only: Sequence[str] | None, timeout: float,
                 tmp: Path, workers: int,
                 progress: Callable[[Column, MatrixResult], None] | None) -> None:
    topo = lab.topology
    tag = f"{topo.name}-{'h' if helper else 'n'}-{sc.name}".replace("+", "_")
    payload = os.urandom(DOWN_SIZE)
    down_sha = hashlib.sha256(payload).hexdigest()
    roots: dict[str, Path] = {}
    procs: list[subprocess.Popen[Any]] = []
    for node in topo.servers:
        root = tmp / f"{tag}-{node}"
        root.mkdir()
        (root / DOWN_NAME).write_bytes(payload)
        roots[node] = root
        spec = ServerSpec(node=node, listen=lab.addr(node), port=lab.control_port,
                          passive_ports=lab.passive_ports, root=root, user=USER,
                          password=PASSWORD,
                          masquerade=_public_of(topo.paths, node) if sc.masquerade
                          else None)
        procs.append(sc.launcher(lab, spec))
    try:
        jobs: list[tuple[Row, Column, CellCtx]] = []
        for p in topo.paths:
            if only and p.name not in only:
                continue
            col = Column(topo.name, p.name, helper, sc.name)
            result.columns.append(col)
            for i, row in enumerate(rows):
                wd = tmp / f"{tag}-{p.name}-{i}"
                wd.mkdir()
                up = os.urandom(50_000 + i)
                (wd / "up").write_bytes(up)
                jobs.append((row, col, CellCtx(
                    lab=lab, client=p.client, client_addr=lab.addr(p.client),
                    target=p.target, port=lab.control_port, user=USER, password=PASSWORD,
                    workdir=wd, server_root=roots[p.server], down_name=DOWN_NAME,
                    down_sha=down_sha, up_src=wd / "up", up_name=f"up-{p.name}-{i}.bin",
                    up_sha=hashlib.sha256(up).hexdigest(), timeout=timeout)))

        def one(job: tuple[Row, Column, CellCtx]) -> tuple[str, Column, Cell]:
            row, col, ctx = job
            try:
                return row.name, col, row.run(ctx)
            except Exception as e:  # noqa: BLE001 (a broken cell, not a broken matrix)
                return row.name, col, Cell(False, f"{type(e).__name__}: {e}", 0.0)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
            for name, col, cell in ex.map(one, jobs):
                result.cells[(name, col)] = cell
        if progress:
            for col in dict.fromkeys(c for _, c, _ in jobs):
                progress(col, result)
    finally:
        for proc in procs:
            lab.stop(proc)


def to_json(result: MatrixResult) -> str:
    return json.dumps([{"row": r, "column": c.label, "ok": cell.ok, "detail": cell.detail,
                        "seconds": round(cell.seconds, 2)}
                       for (r, c), cell in result.cells.items()], indent=1)
