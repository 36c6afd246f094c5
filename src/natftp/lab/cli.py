"""CLI commands of this part of natftp (registered by natftp.cli): `natftp lab ...`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated, Optional  # noqa: UP035 (typer reads Optional)

import typer

lab_app = typer.Typer(name="lab", help="NAT lab: FTP topologies in network namespaces "
                      "(root only).", no_args_is_help=True)


def _fail(msg: str) -> None:
    typer.echo(f"natftp lab: {msg}", err=True)
    raise typer.Exit(1)


@lab_app.command("up")
def up(
    topology: Annotated[str, typer.Argument(help="contest, fourway or lan")],
    helper: Annotated[bool, typer.Option("--helper/--no-helper",
                                         help="attach the kernel FTP helper")] = False,
    backend: Annotated[str, typer.Option(help="rules backend on the routers: nftables or "
                                         "iptables")] = "nftables",
) -> None:
    """Build TOPOLOGY and leave it up (remove it with `natftp lab down`)."""
    from natftp.lab.core import Lab, LabError
    from natftp.lab.topologies import TOPOLOGIES

    if topology not in TOPOLOGIES:
        _fail(f"unknown topology {topology!r} (choose: {', '.join(TOPOLOGIES)})")
    if backend not in ("nftables", "iptables"):
        _fail(f"unknown backend {backend!r} (nftables or iptables)")
    try:
        lab = Lab.build(topology, helper=helper, persistent=True,
                        backend="iptables" if backend == "iptables" else "nftables")
    except LabError as e:
        _fail(str(e))
        return
    t = lab.topology
    typer.echo(f"lab {lab.name} up: {t.name} ({t.description})")
    typer.echo(f"FTP helper: {'on' if helper else 'off'}; control port "
               f"{lab.control_port}, passive {lab.passive_ports[0]}-{lab.passive_ports[1]} "
               "forwarded by the routers")
    for node, addrs in lab.addresses().items():
        typer.echo(f"  {node:8} {lab.ns(node):32} {', '.join(addrs)}")
    for p in t.paths:
        typer.echo(f"  path {p.name}: {p.client} dials {p.target}:{lab.control_port} "
                   f"(server {p.server})")
    first = t.clients[0]
    typer.echo(f"enter a node:  ip netns exec {lab.ns(first)} bash")
    typer.echo(f"remove it:     natftp lab down {lab.name}")


@lab_app.command("down")
def down_cmd(
    name: Annotated[Optional[str], typer.Argument(help="lab name (natftp-PID-RAND)")  # noqa: UP045
                    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="remove every natftp-* namespace "
                                       "(leftovers of killed runs too)")] = False,
) -> None:
    """Remove a lab (its processes and namespaces)."""
    from natftp.lab.core import down, down_all, read_states, require_root_and_tools

    try:
        require_root_and_tools()
    except RuntimeError as e:
        _fail(str(e))
    if all_:
        gone = down_all()
    elif name:
        gone = down(name)
    else:
        states = read_states()
        if len(states) != 1:
            _fail(f"{len(states)} labs recorded as up; name one or use --all "
                  f"({', '.join(s['name'] for s in states) or 'none'})")
        gone = down(states[0]["name"])
    typer.echo(f"removed {len(gone)} namespace(s)" + (": " + " ".join(gone) if gone else ""))


@lab_app.command("status")
def status(
    topology: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="show only labs of this topology")] = None,
) -> None:
    """List labs that are up and leftover natftp namespaces."""
    from natftp.lab.core import list_namespaces, read_states, require_root_and_tools

    try:
        require_root_and_tools()
    except RuntimeError as e:
        _fail(str(e))
    live = set(list_namespaces())
    known: set[str] = set()
    for s in read_states():
        if topology and s["topology"] != topology:
            continue
        present = [n for n in s["namespaces"] if n in live]
        known.update(s["namespaces"])
        typer.echo(f"{s['name']}: {s['topology']}, helper {'on' if s['helper'] else 'off'}, "
                   f"{len(present)}/{len(s['namespaces'])} namespaces present")
        for node, addrs in s["addresses"].items():
            typer.echo(f"  {node:8} {s['prefix'] + node:32} {', '.join(addrs)}")
    stray = sorted(live - known)
    if stray and not topology:
        typer.echo(f"namespaces not recorded as a lab (remove with `natftp lab down --all`): "
                   f"{' '.join(stray)}")
    if not live and not read_states():
        typer.echo("no natftp lab is up")


@lab_app.command("matrix")
def matrix_cmd(
    topology: Annotated[list[str], typer.Option(
        "--topology", "-t", help="topology (repeatable; default: all)")] = [],  # noqa: B006
    helper: Annotated[str, typer.Option(help="off, on or both")] = "both",
    server: Annotated[list[str], typer.Option(
        "--server", "-s", help="server launcher: pyftpdlib, natftp (repeatable)")
    ] = [],  # noqa: B006
    masquerade: Annotated[str, typer.Option(
        help="tell servers behind NAT their public address: no, yes or both")] = "both",
    row: Annotated[list[str], typer.Option("--row", "-r", help="only these rows "
                                           "(repeatable)")] = [],  # noqa: B006
    timeout: Annotated[float, typer.Option(help="seconds per client command")] = 8.0,
    markdown: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="also write the table as markdown to this file")] = None,
) -> None:
    """Run curl, lftp and ftplib in every mode across topologies x helper x server."""
    from rich.console import Console

    from natftp.lab.core import LabError
    from natftp.lab.launchers import LAUNCHERS
    from natftp.lab.matrix import ROWS, ROWS_BY_NAME, ServerConfig, run_matrix
    from natftp.lab.topologies import TOPOLOGIES

    topos = topology or list(TOPOLOGIES)
    for t in topos:
        if t not in TOPOLOGIES:
            _fail(f"unknown topology {t!r} (choose: {', '.join(TOPOLOGIES)})")
    helpers = {"off": (False,), "on": (True,), "both": (False, True)}.get(helper)
    masqs = {"no": (False,), "yes": (True,), "both": (False, True)}.get(masquerade)
    if helpers is None or masqs is None:
        _fail("--helper takes off|on|both, --masquerade no|yes|both")
        return
    servers = []
    for s in server or ["pyftpdlib"]:
        if s not in LAUNCHERS:
            _fail(f"unknown server {s!r} (choose: {', '.join(LAUNCHERS)})")
        for m in masqs:
            servers.append(ServerConfig(s + ("+masq" if m else ""), LAUNCHERS[s], m))
    rows = ROWS
    if row:
        bad = [r for r in row if r not in ROWS_BY_NAME]
        if bad:
            _fail(f"unknown row(s) {bad} (choose: {', '.join(ROWS_BY_NAME)})")
        rows = [ROWS_BY_NAME[r] for r in row]
    console = Console()
    try:
        result = run_matrix(topos, helpers, servers, rows, timeout=timeout)
    except (LabError, subprocess.SubprocessError) as e:
        _fail(str(e))
        return
    console.print(result.rich_table())
    if markdown is not None:
        markdown.write_text(result.to_markdown())
        typer.echo(f"markdown written to {markdown}")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the `natftp` app."""
    app.add_typer(lab_app, name="lab")
