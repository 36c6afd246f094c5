"""``natftp serve`` and ``natftp passwd`` (registered by natftp.cli)."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from natftp import logsetup
from natftp.server.config import (
    ConfigError,
    ServerConfig,
    unwritable,
)
from natftp.server.run import LOOPS, _pick_loop, _Source, serve_config


def _tls_overrides(tls: bool, cert: Path | None, key: Path | None,
                   implicit: list[str], required: str | None, reuse: bool, ccc: bool,
                   state_dir: Path | None) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if tls:
        o["tls.enabled"] = True
    if cert is not None:
        o["tls.cert"] = str(cert.resolve())
    if key is not None:
        o["tls.key"] = str(key.resolve())
    if implicit:
        o["tls.listen_implicit"] = list(implicit)
    if required is not None:
        o["tls.required"] = {"true": True, "false": False}.get(required.lower(), required)
    if reuse:
        o["tls.require_session_reuse"] = True
    if ccc:
        o["tls.ccc"] = True
    if state_dir is not None:
        o["tls.state_dir"] = str(state_dir.resolve())
    return o


def _ops_overrides(status_listen: str | None, log_file: Path | None,
                   log_format: str | None, xferlog: Path | None) -> dict[str, Any]:
    """The issue-20 flags as the keys they set."""
    o: dict[str, Any] = {}
    if status_listen is not None:
        o["status.listen"] = status_listen
    if log_file is not None:
        o["log.file"] = str(log_file.resolve())
    if log_format is not None:
        o["log.format"] = log_format
    if xferlog is not None:
        o["log.xferlog"] = str(xferlog.resolve())
    return o


def _cli_overrides(root: Path | None, listen: list[str], anonymous: bool, read_only: bool,
                   passive_ports: str | None, masquerade: str | None,
                   log_level: str | None) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if root is not None:
        o["root"] = str(root.resolve())
    if listen:
        o["listen"] = list(listen)
    if anonymous:
        o["anonymous.enabled"] = True
    if read_only:
        o["read_only"] = True
    if passive_ports is not None:
        o["passive.ports"] = passive_ports
    if masquerade is not None:
        o["nat.masquerade"] = masquerade
    if log_level is not None:
        o["log_level"] = log_level
    return o


def _storage_overrides(url: str | None, endpoint: str | None) -> dict[str, Any]:
    """--storage s3://BUCKET[/PREFIX] and --s3-endpoint URL as [storage] keys."""
    from natftp.storage.s3 import parse_url

    o: dict[str, Any] = {}
    if url is not None:
        try:
            bucket, prefix = parse_url(url)
        except ValueError as e:
            raise ConfigError("storage.s3.bucket", url, str(e),
                              "write --storage s3://BUCKET or s3://BUCKET/PREFIX") from None
        o.update({"storage.backend": "s3", "storage.s3.bucket": bucket,
                  "storage.s3.prefix": prefix})
    if endpoint is not None:
        o["storage.s3.endpoint"] = endpoint
    return o


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``passwd`` to the ``natftp`` app."""

    @app.command("serve")
    def serve(
        root: Annotated[Path | None, typer.Argument(
            help="Directory to serve (default: the current directory).")] = None,
        listen: Annotated[list[str] | None, typer.Option(
            "--listen", metavar="HOST:PORT",
            help="Repeatable; default [::]:2121 (dual-stack). With 0.0.0.0 and [::] on "
                 "one port the IPv6 socket is v6-only.")] = None,
        user: Annotated[list[str] | None, typer.Option(
            "--user", metavar="NAME:PASSWORD", help="Repeatable; a user with write "
            "access to ROOT.")] = None,
        anonymous: Annotated[bool, typer.Option(
            "--anonymous", help="Allow anonymous, read-only logins.")] = False,
        read_only: Annotated[bool, typer.Option(
            "--read-only", help="No user may write.")] = False,
        passive_ports: Annotated[str | None, typer.Option(
            "--passive-ports", metavar="LOW-HIGH",
            help="Passive data port range (default: any free port).")] = None,
        config: Annotated[Path | None, typer.Option(
            "--config", metavar="FILE", help="TOML configuration (docs/server.md).")
        ] = None,
        masquerade: Annotated[str | None, typer.Option(
            "--masquerade", metavar="auto|off|ADDR",
            help="Public address (or DNS name, re-resolved) told to clients outside; "
                 "auto (the default beyond loopback) asks the router (UPnP, NAT-PMP, "
                 "PCP), cloud metadata and --stun servers, in the background; off: "
                 "neither.")] = None,
        open_router: Annotated[bool, typer.Option(
            "--open-router", help="nat.port_mapping = auto: map the control port and "
            "--passive-ports on the router (UPnP/PCP/NAT-PMP), removed at stop.")
        ] = False,
        stun: Annotated[list[str] | None, typer.Option(
            "--stun", metavar="HOST[:PORT]", help="Repeatable; STUN server for "
            "--masquerade auto (nat.stun_servers; none by default).")] = None,
        explain: Annotated[bool, typer.Option(
            "--explain", help="Print what each class of client is told, and exit. "
            "Sends nothing unless --discover is given too.")
        ] = False,
        discover: Annotated[bool, typer.Option(
            "--discover", help="With --explain and --masquerade auto: first run the "
            "discovery round serving runs at start (asks the router, cloud metadata and "
            "--stun servers; nothing is mapped) and show what it found.")
        ] = False,
        loop: Annotated[str, typer.Option(
            "--loop", help="Event loop: auto (uvloop on Linux), asyncio or uvloop.")
        ] = "auto",
        verbose: Annotated[int, typer.Option(
            "-v", "--verbose", count=True, help="More logging (-v: debug).")] = 0,
        log_level: Annotated[str | None, typer.Option(
            "--log-level", help="debug, info, warning or error.")] = None,
        tls: Annotated[bool, typer.Option(
            "--tls", help="Offer FTPS (AUTH TLS); without --tls-cert a self-signed "
            "certificate is generated once into the state directory.")] = False,
        tls_cert: Annotated[Path | None, typer.Option(
            "--tls-cert", metavar="PEM", help="Certificate, then its chain (implies --tls).")
        ] = None,
        tls_key: Annotated[Path | None, typer.Option(
            "--tls-key", metavar="PEM", help="Private key (default: in --tls-cert).")
        ] = None,
        listen_implicit: Annotated[list[str] | None, typer.Option(
            "--listen-implicit", metavar="HOST:PORT",
            help="Repeatable; implicit-TLS listener (conventionally port 990).")] = None,
        tls_required: Annotated[str | None, typer.Option(
            "--tls-required", metavar="off|control|data",
            help="control: AUTH TLS before USER; data: that and PROT P.")] = None,
        tls_require_session_reuse: Annotated[bool, typer.Option(
            "--tls-require-session-reuse",
            help="Refuse PROT P data connections that do not resume the control "
                 "connection's TLS session.")] = False,
        tls_ccc: Annotated[bool, typer.Option(
            "--tls-ccc", help="Allow CCC: end TLS on the control connection after login "
            "(so a router's FTP helper can read PASV again).")] = False,
        state_dir: Annotated[Path | None, typer.Option(
            "--state-dir", metavar="DIR", help="Where the generated certificate is kept "
            "(tls.state_dir).")] = None,
        storage: Annotated[str | None, typer.Option(
            "--storage", metavar="s3://BUCKET[/PREFIX]",
            help="Serve an S3 bucket (or a prefix of it) instead of ROOT; credentials "
                 "from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or [storage] "
                 "s3.* keys.")] = None,
        s3_endpoint: Annotated[str | None, typer.Option(
            "--s3-endpoint", metavar="URL",
            help="The S3 service (default AWS), e.g. http://127.0.0.1:9000.")] = None,
        proxy_protocol_from: Annotated[list[str] | None, typer.Option(
            "--proxy-protocol-from", metavar="CIDR",
            help="Repeatable; a load balancer whose connections start with a PROXY "
                 "protocol v1/v2 header naming the real client (proxy_protocol.trusted).")
        ] = None,
        run_as: Annotated[str | None, typer.Option(
            "--run-as", metavar="USER[:GROUP]", help="Started as root: bind and read the "
            "certificate, then drop to this user for good (run_as).")] = None,
        allow_root: Annotated[bool, typer.Option(
            "--allow-root", help="Serve as root beyond loopback without --run-as "
            "(allow_root).")] = False,
        status_listen: Annotated[str | None, typer.Option(
            "--status-listen", metavar="[HOST:]PORT", help="Status page and Prometheus "
            "/metrics on this address (status.listen; a bare port is 127.0.0.1).")
        ] = None,
        log_file: Annotated[Path | None, typer.Option(
            "--log-file", metavar="FILE", help="Log to FILE instead of stderr (log.file; "
            "reopened on SIGUSR1).")] = None,
        log_format: Annotated[str | None, typer.Option(
            "--log-format", metavar="text|json", help="log.format: text lines or JSON "
            "lines.")] = None,
        xferlog: Annotated[Path | None, typer.Option(
            "--xferlog", metavar="FILE", help="Transfer log in xferlog format "
            "(log.xferlog).")] = None,
    ) -> None:
        """Serve ROOT over FTP, telling every client an address it can reach."""
        if discover and not explain:
            print("natftp serve: --discover goes with --explain (serving always runs "
                  "discovery when nat.masquerade is auto)", file=sys.stderr)
            raise typer.Exit(2)
        if loop not in LOOPS:
            print(f"natftp serve: --loop {loop}: use one of {', '.join(LOOPS)}",
                  file=sys.stderr)
            raise typer.Exit(2)
        if verbose and log_level is None:
            log_level = "debug"
        overrides = _cli_overrides(root, listen or [], anonymous, read_only, passive_ports,
                                   masquerade, log_level)
        if open_router:
            overrides["nat.port_mapping"] = "auto"
        if stun:
            overrides["nat.stun_servers"] = list(stun)
        if run_as is not None:
            overrides["run_as"] = run_as
        if allow_root:
            overrides["allow_root"] = True
        overrides.update(_tls_overrides(tls, tls_cert, tls_key, listen_implicit or [],
                                        tls_required, tls_require_session_reuse, tls_ccc,
                                        state_dir))
        if proxy_protocol_from:
            overrides["proxy_protocol.trusted"] = list(proxy_protocol_from)
        overrides.update(_ops_overrides(status_listen, log_file, log_format, xferlog))
        source = _Source(config, overrides, user or [])
        try:
            overrides.update(_storage_overrides(storage, s3_endpoint))
            cfg = source.build()
            _pick_loop(loop)  # a missing uvloop is a configuration error, here
        except ConfigError as e:
            print(f"natftp serve: configuration error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
        try:
            logsetup.setup(cfg.log_level.upper(), file=cfg.log.file, fmt=cfg.log.format)
        except OSError as e:
            print(f"natftp serve: configuration error: "
                  f"{unwritable('log.file', cfg.log.file, e)}", file=sys.stderr)
            raise typer.Exit(2) from None
        if explain:
            _explain(cfg, ask=discover)
            return
        if not cfg.users and not cfg.anonymous.enabled:
            source.generated = secrets.token_urlsafe(12)
            cfg = source.build()
        rc = serve_config(cfg, source, loop)
        if rc:
            raise typer.Exit(rc)

    @app.command("passwd")
    def passwd(
        password: Annotated[str | None, typer.Option(
            "--password", help="The password (default: asked twice on the terminal, not "
            "echoed; from a pipe, the first line of stdin).")
        ] = None,
    ) -> None:
        """Print an argon2 hash of a password, for password_hash in the config file.

        Only the hash goes to stdout, so H=$(natftp passwd) works; prompts go to stderr.
        """
        from argon2 import PasswordHasher

        if password is None:
            password = _read_password()
        if not password:
            print("natftp passwd: the password is empty; fix: give one (an empty password "
                  "protects nothing)", file=sys.stderr)
            raise typer.Exit(2)
        print(PasswordHasher().hash(password))


def _read_password() -> str:
    """The password for ``natftp passwd``: asked twice with the prompts on stderr (stdout
    carries only the hash), or the first line of stdin when it is not a terminal
    (``printf '%s\\n' "$PW" | natftp passwd``), which no prompt could be answered on."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    import getpass

    for _ in range(3):
        try:
            first = getpass.getpass("Password: ", stream=sys.stderr)
            if not first:
                print("natftp passwd: empty; type a password", file=sys.stderr)
                continue
            if getpass.getpass("Password (again): ", stream=sys.stderr) == first:
                return first
        except EOFError:
            print(file=sys.stderr)
            break
        print("natftp passwd: the two passwords differ; again", file=sys.stderr)
    print("natftp passwd: no password given; nothing printed", file=sys.stderr)
    raise typer.Exit(1)


def _explain(cfg: ServerConfig, *, ask: bool = False) -> None:
    from natftp.nat import resolver
    from natftp.nat.localnets import local_networks
    from natftp.nat.policy import AdvertisePolicy
    from natftp.nat.ports import PortPool
    from natftp.server.explain import explain

    policy = AdvertisePolicy(cfg.nat.masquerade, cfg.nat.overrides, local_networks())
    if policy.masquerade_is_hostname:
        why = asyncio.run(resolver.resolve_at_start(policy))
        if why is not None:
            from natftp.server.app import masquerade_unresolved

            print(f"natftp serve: configuration error: "
                  f"{masquerade_unresolved(cfg.nat.masquerade, why)}", file=sys.stderr)
            raise typer.Exit(2)
    found = None
    if cfg.nat.zeroconf.discover and ask:
        # the round serving runs at start (bounded by nat.discovery_timeout): the lines
        # below then show the addresses serving would tell, not a guess. Only on request:
        # --explain alone is a dry run that sends nothing
        from natftp.nat.discovery import discover
        from natftp.server.zeroconf import discovery_config

        found = asyncio.run(discover(discovery_config(cfg.nat.zeroconf)))
        policy.set_discovered(found.discovered())
    pool = PortPool(cfg.passive_ports, cfg.nat.advertised_ports)
    for line in explain(cfg, policy, pool, found):
        print(line)
