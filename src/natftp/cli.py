"""The `natftp` command: one entry point, one subcommand group per part of the product.

Each part registers its own commands from its own module (``register(app)``), so the
server, client, lab, doctor and gateway can grow without touching each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from natftp.nat.firewall import ServerPorts

app = typer.Typer(
    name="natftp",
    help="FTP/FTPS that just works through NAT and firewalls.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from natftp import __version__

        print(f"natftp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print natftp's version and exit.")] = False,
) -> None:
    """FTP/FTPS server, client, doctor, gateway and NAT lab."""


def _register_all() -> None:
    from natftp.client import cli as client_cli
    from natftp.doctor import cli as doctor_cli
    from natftp.gateway import cli as gateway_cli
    from natftp.lab import cli as lab_cli
    from natftp.nat import cli as nat_cli
    from natftp.server import cli as server_cli

    server_cli.register(app)
    nat_cli.register(app, read_server_ports=_server_ports,
                     check_server_config=_check_server_config)
    client_cli.register(app)
    lab_cli.register(app)
    doctor_cli.register(app)
    gateway_cli.register(app)


def _server_ports(path: str) -> ServerPorts:
    """`natftp firewall --config`: the ports a natftp server configuration opens (read
    here, on top of both: nat/ sits below the server and does not import it)."""
    from natftp.nat.firewall import ServerPorts
    from natftp.server.config import ConfigError, load

    try:
        cfg = load(path)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    return ServerPorts(cfg.listen[0].port if cfg.listen else None, cfg.passive_ports,
                       cfg.active.source_port)


def _check_server_config(data: dict[str, Any]) -> tuple[str, str] | None:
    """`natftp cluster node`: whether the configuration it writes is one `natftp serve`
    takes (the key at fault and why, or None)."""
    from natftp.server.config import ConfigError, from_dict

    try:
        from_dict(data)
    except ConfigError as e:
        return e.key, str(e)
    return None


_register_all()


def _plain_flags(command: Any, ctx: typer.Context) -> None:
    """Typer's help (0.2x, with its own copy of click) gives every option a type column,
    and for a flag that says ``<bool>`` (``<int>`` for a counted one like ``-v``), as if it
    took a value; an empty metavar is printed instead of the type. Done here, for every
    option of every command and the help option too, so no part has to remember it."""
    params = list(command.params)
    help_option = command.get_help_option(ctx)
    if help_option is not None:
        params.append(help_option)
    for p in params:
        if getattr(p, "is_flag", False) or getattr(p, "count", False):
            p.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub, ctx)


def main() -> None:
    """Run the command. A usage error (unknown option, missing or extra argument, a value
    of the wrong type) is one line naming the command, with every URL's password masked
    (click would quote an extra argument as typed), and exit status 2."""
    from natftp.proto.url import mask

    command = typer.main.get_command(app)
    _plain_flags(command, typer.Context(command))
    try:
        rc = command(standalone_mode=False)
    except typer.TyperException as e:  # click's usage and parameter errors
        if type(e).__name__ == "NoArgsIsHelpError":  # `natftp` alone: the help
            typer.echo(e.format_message(), err=True)
            raise SystemExit(e.exit_code) from None
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None else "natftp"
        typer.echo(f"{where}: {mask(e.format_message())} (see {where} --help)", err=True)
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        typer.echo("natftp: aborted", err=True)
        raise SystemExit(1) from None
    raise SystemExit(rc if isinstance(rc, int) else 0)
