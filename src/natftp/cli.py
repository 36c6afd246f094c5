"""The `natftp` command: one entry point, one subcommand per part of the product."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="natftp",
    help="FTP/FTPS that just works through NAT and firewalls.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """FTP/FTPS server, client, doctor and NAT lab."""


def main() -> None:
    app()
