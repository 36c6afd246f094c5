"""CLI commands of this part of natftp (registered by natftp.cli): `natftp firewall` and
`natftp cluster`.

`firewall --config` reads a natftp server configuration and `cluster node` checks the one
it writes; only the server knows its configuration, so the top-level CLI hands
:func:`register` the reader and the check (nat sits below the server and does not
import it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any, Optional  # noqa: UP035 (typer reads Optional)

import typer

from natftp.nat.firewall import (
    BACKENDS,
    FirewallError,
    ServerPorts,
    params_from_options,
    render,
)
from natftp.nat.ports import DEFAULT_CONTROL_PORT

#: reads a server configuration file; raises ValueError saying what is wrong with it
ServerPortsReader = Callable[[str], ServerPorts]
#: checks a server configuration (a dict shaped like its TOML file): None when it is
#: valid, else the key at fault and the problem in words
ServerConfigCheck = Callable[[dict[str, Any]], tuple[str, str] | None]


def _cluster(config: str) -> Any:
    import tomllib

    from natftp.nat.cluster import ClusterError, parse

    try:
        with open(config, "rb") as f:
            return parse(tomllib.load(f))
    except OSError as e:
        typer.echo(f"natftp cluster: --config {config}: cannot read it ({e.strerror})",
                   err=True)
    except tomllib.TOMLDecodeError as e:
        typer.echo(f"natftp cluster: --config {config}: not valid TOML ({e})", err=True)
    except ClusterError as e:
        typer.echo(f"natftp cluster: {config}: {e}", err=True)
    raise typer.Exit(2)


_CLUSTER_CONFIG = typer.Option("--config", metavar="FILE",
                               help="cluster.toml: the public address, the nodes, the "
                               "passive range (docs/deploy.md)")


def register_cluster(app: typer.Typer,
                     check_server_config: ServerConfigCheck | None = None) -> None:
    """``natftp cluster haproxy|node|nftables``: one plan, printed for each piece."""
    cluster = typer.Typer(name="cluster", no_args_is_help=True, help="Configuration for "
                          "N natftp nodes behind one public address (docs/deploy.md).")
    app.add_typer(cluster)

    @cluster.command("haproxy")
    def haproxy_cmd(config: Annotated[str, _CLUSTER_CONFIG]) -> None:
        """Print haproxy.cfg: the control port balanced with PROXY v2 and health checks,
        each node's passive slice forwarded to that node only."""
        from natftp.nat.cluster import haproxy

        sys.stdout.write(haproxy(_cluster(config), config))

    @cluster.command("nftables")
    def nftables_cmd(config: Annotated[str, _CLUSTER_CONFIG]) -> None:
        """Print the same plan as nftables DNAT rules for a Linux router."""
        from natftp.nat.cluster import nftables

        sys.stdout.write(nftables(_cluster(config), config))

    @cluster.command("node")
    def node_cmd(name: Annotated[str, typer.Argument(help="the node's name in "
                                                      "cluster.toml")],
                 config: Annotated[str, _CLUSTER_CONFIG]) -> None:
        """Print the node's natftp serve configuration (TOML for --config)."""
        import tomli_w

        from natftp.nat.cluster import ClusterError, node_config

        c = _cluster(config)
        try:
            data = node_config(c, name)
        except ClusterError as e:
            typer.echo(f"natftp cluster node: {e}", err=True)
            raise typer.Exit(2) from None
        problem = check_server_config(data) if check_server_config is not None else None
        if problem is not None:
            key, why = problem
            if key != "root" and not key.endswith(".home"):
                typer.echo(f"natftp cluster node: the [serve] table of {config} gives "
                           f"an invalid node configuration: {why}", err=True)
                raise typer.Exit(2)
            typer.echo(f"natftp cluster node: note: {why} (on this machine; the node "
                       "needs it)", err=True)
        sys.stdout.write(f"# natftp cluster node {name}: generated from {config}\n"
                         f"# run on {name}: natftp serve --config THIS_FILE\n")
        sys.stdout.write(tomli_w.dumps(data))


def register(app: typer.Typer, read_server_ports: ServerPortsReader | None = None,
             check_server_config: ServerConfigCheck | None = None) -> None:
    """Add this part's commands to the `natftp` app."""
    register_cluster(app, check_server_config)

    @app.command("firewall")
    def firewall(
        backend: Annotated[str, typer.Option(help="nftables or iptables")] = "nftables",
        control_port: Annotated[
            Optional[int],  # noqa: UP045
            typer.Option(help="public FTP control port [default: from --config, else "
                         f"{DEFAULT_CONTROL_PORT}, natftp serve's]")
        ] = None,
        config: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option("--config", metavar="FILE",
                         help="take the control port, passive range and active source "
                         "port from this natftp server configuration")
        ] = None,
        passive_ports: Annotated[
            Optional[str], typer.Option(help="passive range LOW-HIGH")  # noqa: UP045
        ] = None,
        router: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option(metavar="WAN_IF", help="emit router port forwards on this WAN "
                         "interface (with --server)"),
        ] = None,
        server: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option(metavar="ADDR[:PORT]", help="server's LAN address for the "
                         "port forwards"),
        ] = None,
        lan_if: Annotated[
            Optional[str],  # noqa: UP045
            typer.Option(metavar="LAN_IF", help="router's LAN interface (tighter forward "
                         "rules, outbound active-mode data)"),
        ] = None,
        ftp_helper: Annotated[
            bool, typer.Option("--ftp-helper", help="attach the kernel FTP conntrack "
                               "helper to the control port")
        ] = False,
        no_host: Annotated[
            bool, typer.Option("--no-host", help="omit the host firewall section")
        ] = False,
        active: Annotated[
            bool, typer.Option("--active/--no-active", help="allow outbound active-mode "
                               "data connections")
        ] = True,
        active_source_port: Annotated[
            Optional[int],  # noqa: UP045
            typer.Option(help="source port of active-mode data connections (0: any) "
                         "[default: from --config, else 0, natftp serve's]")
        ] = None,
    ) -> None:
        """Print the firewall rules (host and/or router port forwards) for an FTP server."""
        if backend not in BACKENDS:
            typer.echo(f"natftp firewall: unknown backend {backend!r} "
                       "(nftables or iptables)", err=True)
            raise typer.Exit(2)
        if config is not None:
            if read_server_ports is None:
                typer.echo("natftp firewall: --config is not available here", err=True)
                raise typer.Exit(2)
            try:
                sp = read_server_ports(config)
            except ValueError as e:
                typer.echo(f"natftp firewall: {e}", err=True)
                raise typer.Exit(2) from None
            if control_port is None and sp.control_port is not None:
                control_port = sp.control_port
            if passive_ports is None and sp.passive_ports is not None:
                passive_ports = f"{sp.passive_ports[0]}-{sp.passive_ports[1]}"
            if active_source_port is None:
                active_source_port = sp.active_source_port
        try:
            params = params_from_options(
                control_port=DEFAULT_CONTROL_PORT if control_port is None else control_port,
                passive_ports=passive_ports, router=router,
                server=server, lan_if=lan_if, ftp_helper=ftp_helper, no_host=no_host,
                active=active, active_source_port=active_source_port or None)
            text = render(params, "iptables" if backend == "iptables" else "nftables")
        except FirewallError as e:
            typer.echo(f"natftp firewall: {e}", err=True)
            raise typer.Exit(2) from None
        if passive_ports is None:
            typer.echo("natftp firewall: warning: no passive port range, so these rules "
                       "open no passive data ports and passive transfers (PASV/EPSV) would "
                       "be blocked; fix: give the server a range (natftp serve "
                       "--passive-ports 30000-30099, or passive.ports) and the same one "
                       "here (--passive-ports, or --config)", err=True)
        sys.stdout.write(text)
