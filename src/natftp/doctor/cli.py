"""`natftp doctor`: connect as a client, try every mode, name the cause and the fix."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console

from natftp.doctor.checks import TargetError, diagnose
from natftp.doctor.render import render


def register(app: typer.Typer) -> None:
    """Add this part's commands to the `natftp` app."""

    @app.command("doctor")
    def doctor(
        url: str = typer.Argument(..., help="ftp://user:pass@host[:port]/"),
        tls: bool = typer.Option(False, "--tls", help="Explicit FTPS (AUTH TLS)."),
        implicit_tls: bool = typer.Option(False, "--implicit-tls",
                                          help="Implicit FTPS (TLS from the first byte)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
        write: bool = typer.Option(False, "--write",
                                   help="Upload, read back and delete a small test file."),
        timeout: float = typer.Option(3.0, "--timeout", min=0.2, max=60.0,
                                      help="Seconds for each network step."),
        verbose: bool = typer.Option(False, "--verbose", "-v",
                                     help="Show all evidence lines."),
        compare_plain: bool = typer.Option(
            False, "--compare-plain",
            help="With explicit TLS: also log in over plain FTP (the password crosses the "
                 "network in the clear) to compare PASV with and without TLS, which shows "
                 "a router's FTP helper (the pasv-tls check)."),
    ) -> None:
        """Diagnose an FTP/FTPS server from here: cause and fix for what fails.

        Exit status 0 only when everything passive transfers need works.
        """
        try:
            report = asyncio.run(diagnose(url, tls=tls, implicit_tls=implicit_tls,
                                          write=write, timeout=timeout,
                                          compare_plain=compare_plain))
        except TargetError as e:
            typer.echo(f"natftp doctor: {e}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(report.to_json(), indent=2))
        else:
            render(report, Console(), verbose=verbose)
        raise typer.Exit(0 if report.ok else 1)
