"""CLI commands of this part of natftp (registered by natftp.cli)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from natftp import logsetup


def register(app: typer.Typer) -> None:
    """Add this part's commands to the `natftp` app."""
    app.command("gateway")(gateway)


def gateway(
    listen: str = typer.Option(..., "--listen", metavar="HOST:PORT",
                               help="Where clients connect (plain FTP, AUTH TLS offered)."),
    upstream: str = typer.Option(..., "--upstream", metavar="HOST:PORT",
                                 help="The FTP server behind the gateway."),
    masquerade: str = typer.Option(None, "--masquerade", metavar="ADDR",
                                   help="Address told to clients outside the local "
                                   "networks in 227 replies."),
    passive_ports: str = typer.Option(None, "--passive-ports", metavar="LOW-HIGH",
                                      help="Ports for the gateway's client-facing data "
                                      "listeners (forward them on the router)."),
    override: Annotated[list[str] | None, typer.Option(
        "--override", metavar="NET[,NET]=ADDR",
        help="Clients in NET are told ADDR (repeatable).")] = None,
    tls_cert: str = typer.Option(None, "--tls-cert", metavar="FILE"),
    tls_key: str = typer.Option(None, "--tls-key", metavar="FILE"),
    implicit_listen: str = typer.Option(None, "--implicit-listen", metavar="HOST:PORT",
                                        help="Also accept implicit FTPS (TLS from the "
                                        "first byte) here."),
    no_tls: bool = typer.Option(False, "--no-tls", help="Do not offer AUTH TLS."),
    require_tls: bool = typer.Option(False, "--require-tls",
                                     help="Refuse USER/PASS before AUTH TLS."),
    upstream_tls: bool = typer.Option(False, "--upstream-tls",
                                      help="Speak explicit FTPS (AUTH TLS, PROT P) upstream."),
    upstream_mode: str = typer.Option("auto", "--upstream-mode",
                                      help="auto (mirror the client, fall back to the other "
                                      "mode), passive or active."),
    connect_timeout: float = typer.Option(10.0, "--connect-timeout"),
    data_timeout: float = typer.Option(30.0, "--data-timeout",
                                       help="Data connection setup and idle timeout (s)."),
    idle_timeout: float = typer.Option(300.0, "--idle-timeout",
                                       help="Control connection idle timeout (s)."),
    max_sessions: int = typer.Option(200, "--max-sessions"),
    no_zero_copy: bool = typer.Option(False, "--no-zero-copy",
                                      help="Copy through a buffer instead of os.splice."),
    verbose: bool = typer.Option(False, "-v", "--verbose"),
) -> None:
    """A userspace FTP helper: relays FTP/FTPS to an unchanged server and rewrites its
    passive and active addresses, translating modes and terminating TLS."""
    from natftp.gateway.server import Gateway, GatewayConfig, parse_hostport, parse_range
    from natftp.nat.policy import Override

    logsetup.setup(logging.DEBUG if verbose else logging.INFO)  # the server's line format
    try:
        if upstream_mode not in ("auto", "passive", "active"):
            raise ValueError(f"--upstream-mode {upstream_mode!r}: auto, passive or active")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        overrides = []
        for ov in override or []:
            nets, sep, addr = ov.partition("=")
            if not sep:
                raise ValueError(f"--override {ov!r}: expected NET[,NET]=ADDR")
            overrides.append(Override.parse(nets.split(","), addr))
        cfg = GatewayConfig(
            listen=parse_hostport(listen, "--listen"),
            upstream=parse_hostport(upstream, "--upstream"),
            masquerade=masquerade, overrides=overrides,
            passive_ports=parse_range(passive_ports) if passive_ports else (0, 0),
            implicit_listen=parse_hostport(implicit_listen, "--implicit-listen")
            if implicit_listen else None,
            tls_cert=tls_cert, tls_key=tls_key, tls=not no_tls, require_tls=require_tls,
            upstream_tls=upstream_tls, upstream_mode=upstream_mode,  # type: ignore[arg-type]
            connect_timeout=connect_timeout, data_timeout=data_timeout,
            idle_timeout=idle_timeout, max_sessions=max_sessions,
            zero_copy=not no_zero_copy)
        gw = Gateway(cfg)
    except (ValueError, OSError) as e:
        typer.echo(f"natftp gateway: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        asyncio.run(gw.serve_forever())
    except KeyboardInterrupt:
        pass
    except OSError as e:
        typer.echo(f"natftp gateway: cannot listen: {e}", err=True)
        raise typer.Exit(1) from None
