"""The `natftp` command: one entry point, one subcommand group per part of the product.

Each part registers its own commands from its own module (``register(app)``), so the
server, client, lab, doctor and gateway can grow without touching each other.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="natftp",
    help="FTP/FTPS that just works through NAT and firewalls.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """FTP/FTPS server, client, doctor, gateway and NAT lab."""


def _register_all() -> None:
    from natftp.client import cli as client_cli
    from natftp.doctor import cli as doctor_cli
    from natftp.gateway import cli as gateway_cli
    from natftp.lab import cli as lab_cli
    from natftp.nat import cli as nat_cli
    from natftp.server import cli as server_cli

    server_cli.register(app)
    nat_cli.register(app)
    client_cli.register(app)
    lab_cli.register(app)
    doctor_cli.register(app)
    gateway_cli.register(app)


_register_all()


def main() -> None:
    app()
