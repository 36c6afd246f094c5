"""The `natftp` command: one entry point, one subcommand group per part of the product.

Each part registers its own commands from its own module (``register(app)``), so the
server, client, lab, doctor and gateway can grow without touching each other.

Start-up is paid on every call (scripts call the client in loops), so :func:`main`
imports only what the command it runs uses:

- ``natftp``, ``natftp --help``, ``natftp --version``: from the table below, no part and
  no typer imported;
- the client's commands (``ls``, ``get``...): ``natftp.client.cli`` alone, through its
  own small parser (no typer);
- any other command: a typer app with only the part that owns it registered;
- shell completion, and anything the fast paths do not know (an unknown command or
  option, for typer's own message): the full typer app, every part registered. The same
  full app is ``natftp.cli.app`` (built on first use), for completion and the tests.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    from natftp.nat.firewall import ServerPorts

HELP = "FTP/FTPS that just works through NAT and firewalls."

#: every command: the part that registers it, and its one-line help for `natftp --help`
#: (tests/test_cli_startup.py checks this table against the parts' own commands)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("server", "Serve ROOT over FTP, telling every client an address it can "
                        "reach."),
    "passwd": ("server", "Print an argon2 hash of a password, for password_hash in the "
                         "config file."),
    "firewall": ("nat", "Print the firewall rules (host and/or router port forwards) for "
                        "an FTP server."),
    "ls": ("client", "List a remote directory (MLSD, or LIST parsed for Unix and Windows "
                     "servers)."),
    "get": ("client", "Download one file."),
    "put": ("client", "Upload one file."),
    "mirror": ("client", "Make DST a copy of SRC (one side a URL); compares size and "
                         "modification time."),
    "rm": ("client", "Remove a remote file (or an empty directory, or a tree with -r)."),
    "mkdir": ("client", "Create a remote directory."),
    "mv": ("client", "Rename or move a remote file or directory."),
    "doctor": ("doctor", "Diagnose an FTP/FTPS server from here: cause and fix for what "
                         "fails."),
    "gateway": ("gateway", "A userspace FTP helper: relays FTP/FTPS to an unchanged server "
                           "and rewrites its passive and active addresses, translating "
                           "modes and terminating TLS."),
    "cluster": ("nat", "Configuration for N natftp nodes behind one public address "
                       "(docs/deploy.md)."),
    "lab": ("lab", "NAT lab: FTP topologies in network namespaces (root only)."),
}
#: the parts, in the order the full app registers them (the order `natftp --help` lists)
PARTS = ("server", "nat", "client", "lab", "doctor", "gateway")

#: the root's options, as typer's root help lists them
ROOT_OPTIONS = (
    ("--version", "Print natftp's version and exit."),
    ("--install-completion", "Install completion for the current shell."),
    ("--show-completion", "Show completion for the current shell, to copy it or "
                          "customize the installation."),
    ("--help", "Show this message and exit."),
)


def root_help() -> str:
    """`natftp --help`, from the tables above."""
    import textwrap

    width = max(40, min(int(os.environ.get("COLUMNS", "0") or 0) or 100, 120))
    out = ["Usage: natftp [OPTIONS] COMMAND [ARGS]...", "", f"  {HELP}", ""]
    for title, rows, left in (("Options", ROOT_OPTIONS, 22),
                              ("Commands", [(n, h) for n, (_, h) in COMMANDS.items()], 10)):
        out.append(f"{title}:")
        for name, text in rows:
            lines = textwrap.wrap(text, width - left - 4) or [""]
            out.append(f"  {name.ljust(left)}  {lines[0]}")
            out += [" " * (left + 4) + ln for ln in lines[1:]]
        out.append("")
    return "\n".join(out).rstrip("\n")


def __getattr__(name: str) -> Any:
    """``natftp.cli.app``: the full typer app, built on first use."""
    if name == "app":
        app = build_app(PARTS)
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_app(parts: tuple[str, ...]) -> typer.Typer:
    """A typer app with the commands of ``parts`` registered (all of them: the full app)."""
    import typer

    app = typer.Typer(name="natftp", help=HELP, no_args_is_help=True,
                      pretty_exceptions_enable=False)

    def _print_version(value: bool) -> None:
        if value:
            print(_version())
            raise typer.Exit()

    @app.callback()
    def _root(version: bool = typer.Option(False, "--version", is_eager=True,
                                           callback=_print_version,
                                           help="Print natftp's version and exit.")
              ) -> None:
        """FTP/FTPS server, client, doctor, gateway and NAT lab."""

    for part in PARTS:
        if part not in parts:
            continue
        if part == "server":
            from natftp.server import cli as server_cli
            server_cli.register(app)
        elif part == "nat":
            from natftp.nat import cli as nat_cli
            nat_cli.register(app, read_server_ports=_server_ports,
                             check_server_config=_check_server_config)
        elif part == "client":
            from natftp.client import cli as client_cli
            client_cli.register(app)
        elif part == "lab":
            from natftp.lab import cli as lab_cli
            lab_cli.register(app)
        elif part == "doctor":
            from natftp.doctor import cli as doctor_cli
            doctor_cli.register(app)
        elif part == "gateway":
            from natftp.gateway import cli as gateway_cli
            gateway_cli.register(app)
    return app


def _version() -> str:
    from natftp import __version__

    return f"natftp {__version__}"


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


def _plain_flags(command: Any, ctx: Any) -> None:
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
    argv = sys.argv[1:]
    completing = any(k.endswith("_COMPLETE") and k.startswith("_NATFTP") for k in os.environ)
    if not completing:
        if argv in (["--help"], ["--version"]):
            print(root_help() if argv == ["--help"] else _version())
            raise SystemExit(0)
        if not argv:  # typer's no_args_is_help: the help, on stderr, status 2
            print(root_help(), file=sys.stderr)
            raise SystemExit(2)
        part = COMMANDS.get(argv[0], ("", ""))[0]
        if part == "client":
            from natftp.client.cli import run

            raise SystemExit(run(argv[0], argv[1:]))
        if part:
            _run_typer(build_app((part,)))
    _run_typer(build_app(PARTS))


def _run_typer(app: typer.Typer) -> None:
    import typer

    from natftp.proto.url import mask

    command = typer.main.get_command(app)
    _plain_flags(command, typer.Context(command))
    try:
        rc = command(standalone_mode=False)
    except typer.TyperException as e:  # click's usage and parameter errors
        if type(e).__name__ == "NoArgsIsHelpError":  # `natftp lab` alone: the help
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
