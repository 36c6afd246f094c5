"""Render a doctor report: a rich table, then Diagnosis and Fix in plain sentences."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from natftp.doctor.result import FAIL, OK, SKIP, WARN, Report

_STYLE = {OK: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}
_MARK = {OK: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}


def render(report: Report, console: Console, verbose: bool = False) -> None:
    console.print(f"natftp doctor: {report.target}  (server: {report.server_display})")
    table = Table(show_lines=False, expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("what we saw", overflow="fold")
    for r in report.results:
        detail = Text(r.summary)
        shown = r.evidence if verbose else [e for e in r.evidence if _key(e)][:3]
        for e in shown:
            detail.append("\n  " + e, style="dim")
        table.add_row(r.title, Text(_MARK[r.verdict], style=_STYLE[r.verdict]), detail)
    console.print(table)
    diag = report.diagnosis
    fixes = report.fixes
    console.print()
    console.print("[bold]Diagnosis[/bold]")
    if diag:
        for d in diag:
            console.print(f"- {d}")
    else:
        console.print("- Everything passive transfers need works.")
    if fixes:
        console.print()
        console.print("[bold]Fix[/bold]")
        for f in fixes:
            console.print(f"- {f}")
    console.print()
    if report.ok:
        console.print("[green]Result: passive transfers work.[/green]")
    else:
        console.print("[bold red]Result: problems found (see Diagnosis and Fix).[/bold red]")


def _key(line: str) -> bool:
    """The evidence lines worth showing without --verbose."""
    return line.startswith(("PASV ->", "EPSV ->", "connect", "advertised", "the server",
                            "not connecting", "AUTH", "no connection", "data connection",
                            "ports seen", "EPRT", "PORT", "220", "certificate", "TLS"))
