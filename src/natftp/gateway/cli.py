"""CLI commands of this part of natftp (registered by natftp.cli)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from natftp import logsetup
from natftp.proto.hostport import parse_hostport, parse_listen, parse_port_range

if TYPE_CHECKING:
    from natftp.gateway.server import Gateway

log = logging.getLogger("natftp.gateway")


def _loop_factory() -> Any:
    """uvloop on Linux when installed (as `natftp serve`): a relay waits on the loop
    thousands of times a second, and asyncio's selector loop costs more per wait."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def register(app: typer.Typer) -> None:
    """Add this part's commands to the `natftp` app."""
    app.command("gateway")(gateway)


def gateway(
    listen: str = typer.Option(..., "--listen", metavar="HOST:PORT",
                               help="Where clients connect (FTP; AUTH TLS when TLS is on)."),
    upstream: str = typer.Option(..., "--upstream", metavar="HOST:PORT",
                                 help="The FTP server behind the gateway."),
    masquerade: str = typer.Option(None, "--masquerade", metavar="ADDR|HOSTNAME",
                                   help="Address told to clients outside the local "
                                   "networks in 227 replies; a hostname is resolved again "
                                   "every 5 minutes."),
    passive_ports: str = typer.Option(None, "--passive-ports", metavar="LOW-HIGH",
                                      help="Ports for the gateway's client-facing data "
                                      "listeners (forward them on the router)."),
    advertised_ports: str = typer.Option(None, "--advertised-ports", metavar="LOW-HIGH",
                                         help="The ports clients are told instead, when a "
                                         "NAT in front translates --passive-ports (same "
                                         "size)."),
    override: Annotated[list[str] | None, typer.Option(
        "--override", metavar="NET[,NET]=ADDR",
        help="Clients in NET are told ADDR (repeatable).")] = None,
    tls: bool = typer.Option(False, "--tls", help="Offer AUTH TLS to clients (without "
                             "--tls-cert, with a self-signed certificate)."),
    tls_cert: str = typer.Option(None, "--tls-cert", metavar="FILE",
                                 help="Certificate clients see (implies --tls)."),
    tls_key: str = typer.Option(None, "--tls-key", metavar="FILE",
                                help="Its private key (default: in --tls-cert, as serve "
                                "reads it)."),
    listen_implicit: str = typer.Option(None, "--listen-implicit", "--implicit-listen",
                                        metavar="HOST:PORT",
                                        help="Also accept implicit FTPS (TLS from the "
                                        "first byte) here (implies --tls). "
                                        "--implicit-listen is its older spelling."),
    no_tls: bool = typer.Option(False, "--no-tls", help="Do not offer AUTH TLS, even with "
                                "--upstream-tls."),
    require_tls: bool = typer.Option(False, "--require-tls",
                                     help="Refuse USER/PASS before AUTH TLS."),
    upstream_tls: bool = typer.Option(False, "--upstream-tls",
                                      help="Speak explicit FTPS (AUTH TLS, PROT P) upstream "
                                      "(implies --tls unless --no-tls)."),
    upstream_mode: str = typer.Option("auto", "--upstream-mode",
                                      help="auto (mirror the client, fall back to the other "
                                      "mode), passive or active."),
    connect_timeout: float = typer.Option(10.0, "--connect-timeout", min=0.1,
                                          help="Seconds to reach the upstream and for a "
                                          "client's TLS handshake."),
    data_timeout: float = typer.Option(30.0, "--data-timeout", min=0.1,
                                       help="Data connection setup and idle timeout (s)."),
    idle_timeout: float = typer.Option(300.0, "--idle-timeout", min=1.0,
                                       help="Control connection idle timeout (s)."),
    max_sessions: int = typer.Option(200, "--max-sessions", min=1,
                                     help="Sessions at once; one more gets 421 (busy)."),
    no_zero_copy: bool = typer.Option(False, "--no-zero-copy",
                                      help="Copy through a buffer instead of os.splice."),
    verbose: bool = typer.Option(False, "-v", "--verbose",
                                 help="Debug logging (passwords are never logged)."),
) -> None:
    """A userspace FTP helper: relays FTP/FTPS to an unchanged server and rewrites its
    passive and active addresses, translating modes and terminating TLS."""
    from natftp.gateway.server import Gateway, GatewayConfig
    from natftp.nat.policy import Override

    logsetup.setup(logging.DEBUG if verbose else logging.INFO)  # the server's line format
    try:
        if upstream_mode not in ("auto", "passive", "active"):
            raise ValueError(f"--upstream-mode {upstream_mode!r}: auto, passive or active")
        if tls_key is not None and tls_cert is None:
            raise ValueError("--tls-key needs --tls-cert (the certificate it belongs to)")
        if tls and no_tls:
            raise ValueError("--tls and --no-tls contradict each other")
        overrides = []
        for ov in override or []:
            nets, sep, addr = ov.partition("=")
            if not sep:
                raise ValueError(f"--override {ov!r}: expected NET[,NET]=ADDR")
            overrides.append(Override.parse(nets.split(","), addr))
        cfg = GatewayConfig(
            listen=_listen(listen, "--listen"),
            upstream=_endpoint(upstream, "--upstream"),
            masquerade=masquerade, overrides=overrides,
            passive_ports=_range(passive_ports, "--passive-ports"),
            advertised_ports=_range(advertised_ports, "--advertised-ports"),
            implicit_listen=_listen(listen_implicit, "--listen-implicit")
            if listen_implicit else None,
            tls_cert=tls_cert, tls_key=tls_key,
            tls=True if tls else False if no_tls else None, require_tls=require_tls,
            upstream_tls=upstream_tls, upstream_mode=upstream_mode,  # type: ignore[arg-type]
            connect_timeout=connect_timeout, data_timeout=data_timeout,
            idle_timeout=idle_timeout, max_sessions=max_sessions,
            zero_copy=not no_zero_copy)
        if cfg.advertised_ports is not None and cfg.passive_ports is None:
            raise ValueError("--advertised-ports maps --passive-ports: give both")
        gw = Gateway(cfg)
    except (ValueError, OSError) as e:
        typer.echo(f"natftp gateway: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(gw))
    except OSError as e:
        typer.echo(f"natftp gateway: cannot listen: {e.strerror or e}; fix: stop the "
                   "other server on that address or choose another with --listen "
                   "HOST:PORT", err=True)
        raise typer.Exit(1) from None


async def _serve(gw: Gateway) -> None:
    """Serve until SIGTERM or SIGINT (Ctrl-C), then close the listeners and the sessions
    and say so: a service manager's stop is a clean exit 0, not a death by signal."""
    import signal

    await gw.start()
    stop = asyncio.Event()
    got: list[str] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda s=sig: (got.append(s.name), stop.set()))
    try:
        await stop.wait()
    finally:
        log.info("stopping (%s): closing listeners and %d sessions",
                 got[0] if got else "exit", len(gw.sessions))
        await gw.close()
    log.info("gateway stopped")


def _listen(text: str, what: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as e:
        raise ValueError(f"{what} {e}") from None


def _endpoint(text: str, what: str) -> tuple[str, int]:
    try:
        return parse_hostport(text)
    except ValueError as e:
        raise ValueError(f"{what} {e}") from None


def _range(text: str | None, what: str) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        return parse_port_range(text)
    except ValueError as e:
        raise ValueError(f"{what} {e}") from None
