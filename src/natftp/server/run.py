"""The running ``natftp serve``: a process that holds what serving needs, nothing more.

``natftp serve`` parses its flags and builds the configuration in the ``natftp`` command
(typer, with click, rich and pydantic under it: ~12 MiB of an idle server's ~30 MiB
PSS, for nothing the server does once it runs). Then :func:`serve_config` hands the
checked configuration to a fresh interpreter *in the same process*: ``exec`` of
``python -m natftp.server.run FD``, the configuration pickled in a memfd (FD) that only
this exec inherits. The PID, the standard streams, the environment and the interpreter's
flags stay; what the new interpreter imports is the server and what its configuration
uses. The command line of the running server no longer shows ``--user NAME:PASSWORD``.

When ``natftp serve`` is not the process's own command (called in-process, e.g. by a
test through ``natftp.cli.main``), the server runs in the calling process instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pickle
import signal
import sys
import time
from pathlib import Path
from typing import Any

from natftp import logsetup
from natftp.server.config import ConfigError, ServerConfig, User, from_dict, load, unwritable

LOOPS = ("auto", "asyncio", "uvloop")


def _cli_users(cfg: ServerConfig, specs: list[str]) -> ServerConfig:
    users = list(cfg.users)
    for spec in specs:
        name, sep, password = spec.partition(":")
        if not sep or not name or not password:
            shown = f"{name}:****" if password else spec  # never echo a password
            raise ConfigError("--user", shown, "not NAME:PASSWORD",
                              "write --user alice:secret")
        if cfg.user(name) is not None or any(u.name == name for u in users):
            raise ConfigError("--user", name, "user defined twice",
                              "give each user once (config file or --user)")
        users.append(User(name=name, home=cfg.root, password=password))
    return dataclasses.replace(cfg, users=tuple(users))


def _url_host(cfg: ServerConfig) -> tuple[str, int]:
    la = cfg.listen[0]
    host = la.host
    if host in ("::", "0.0.0.0"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return host, la.port


def _scheme(cfg: ServerConfig) -> str:
    """The URL scheme a client should use on the plain port: ftpes:// when TLS is offered,
    so a URL copied from the start-up lines asks for it."""
    return "ftpes" if cfg.tls.enabled else "ftp"


def _what_is_shared(cfg: ServerConfig) -> list[str]:
    """The start-up lines that say what this server exposes: the directory, whether anyone
    can write, whether strangers get in, and whether passwords can cross in the clear; the
    person who typed ``natftp serve`` should not have to work that out from the flags."""
    if cfg.read_only:
        access = "read-only (read_only = true / --read-only)"
    elif any(u.permissions.write for u in cfg.users):
        access = "writable"
    else:
        access = "read-only (no user has permissions.write)"
    anon = "anonymous logins off"
    if cfg.anonymous.enabled:
        anon = "anonymous logins on (read-only, for anyone who can connect"
        anon += f", home {cfg.anonymous.home})" if cfg.anonymous.home else ")"
    tls = cfg.tls
    if not tls.enabled:
        how = ("TLS off: logins and files cross the network in the clear (--tls to offer "
               "FTPS)")
    elif tls.required == "data":
        how = ("TLS required: AUTH TLS before every login and PROT P for every transfer "
               "(tls.required = data)")
    elif tls.required == "control":
        how = ("TLS required for logins: AUTH TLS before USER (tls.required = control); "
               "files may still cross in the clear (PROT C)")
    else:
        strict = [u.name for u in cfg.users if u.tls_required in ("control", "data")]
        but = f" (except for {', '.join(strict)}: users.tls.required)" if strict else ""
        how = ("TLS offered (AUTH TLS), not required: logins may still come in the clear"
               f"{but}; --tls-required control refuses them")
    return [f"natftp: sharing {cfg.root}, {access}; {anon}", f"natftp: {how}"]


def _pick_loop(choice: str) -> Any:
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("--loop", choice, "uvloop is not installed",
                              "pip install uvloop, or use --loop asyncio") from None
        return None
    if choice == "auto" and not sys.platform.startswith("linux"):
        return None
    return uvloop.new_event_loop


class _Source:
    """How the configuration is made, kept for SIGHUP: the file is read again, with the
    same flags on top and the same ``--user`` users (and the generated user, with the
    password printed at start, while no other user is configured)."""

    def __init__(self, config: Path | None, overrides: dict[str, Any],
                 users: list[str]) -> None:
        self.config, self.overrides, self.users = config, overrides, users
        self.generated: str | None = None

    def build(self) -> ServerConfig:
        # NATFTP_<SECTION>_<KEY> variables sit between the file and the flags, read
        # again at every reload like the file
        cfg = (load(self.config, overrides=self.overrides, env=os.environ)
               if self.config is not None
               else from_dict({}, overrides=self.overrides, env=os.environ))
        cfg = _cli_users(cfg, self.users)
        if self.generated is not None and not cfg.users and not cfg.anonymous.enabled:
            cfg = dataclasses.replace(cfg, users=(User(name="natftp", home=cfg.root,
                                                       password=self.generated),))
        return cfg


def _status_line(server: Any) -> str:
    """systemd's STATUS=: what ``systemctl status`` shows."""
    where = ", ".join(str(la) for la in server.bound)
    st = server.stats
    return (f"serving on {where}; {len(server.sessions)} sessions; logins "
            f"{st.logins['ok']} ok, {st.logins['failed']} failed")


async def _run(cfg: ServerConfig, source: _Source) -> int:
    from natftp.server.app import ReloadRefused, Server
    from natftp.server.notify import Notifier

    generated = source.generated
    log = logging.getLogger("natftp.server")
    notifier = Notifier()
    server = Server(cfg)
    try:
        bound = await server.start()
    except ConfigError as e:
        print(f"natftp serve: configuration error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"natftp serve: cannot listen: {e.strerror or e}; fix: stop the other "
              "server on that address or choose another with --listen HOST:PORT",
              file=sys.stderr)
        return 1
    for la in bound:
        print(f"natftp: listening on {server.describe(la)}", flush=True)
    for la in server.bound_implicit:
        print(f"natftp: listening on {server.describe(la)} implicit TLS", flush=True)
    if server.certs is not None and server.certs.info is not None:
        info = server.certs.info
        print(f"natftp: TLS {info.source}, valid until {info.not_after:%Y-%m-%d}\n"
              f"natftp: TLS certificate SHA-256 fingerprint {info.fingerprint}", flush=True)
    if server.bound_status is not None:
        la = server.bound_status
        print(f"natftp: status page http://{la}/ and metrics http://{la}/metrics",
              flush=True)
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"natftp: event loop {loop_name}; passive ports {server.pool.describe()}",
          flush=True)
    print("\n".join(_what_is_shared(cfg)), flush=True)
    host, _ = _url_host(cfg)
    if generated is not None:
        print(f"natftp: user natftp, password {generated} (shown once)\n"
              f"natftp: {_scheme(cfg)}://natftp:{generated}@{host}:{bound[0].port}/",
              flush=True)
    else:
        print(f"natftp: {_scheme(cfg)}://{host}:{bound[0].port}/", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    reloading: list[asyncio.Task[None]] = []

    async def reload() -> None:
        notifier.reloading()
        certs = server.certs  # replaced only when the certificate was read anew
        try:
            try:
                new = source.build()
            except ConfigError as e:
                raise ReloadRefused(str(e)) from None
            changed = await server.reload(new)
        except ReloadRefused as e:
            server.reloads[1] += 1
            log.error("SIGHUP: configuration not reloaded, the running one stays: %s", e)
            notifier.ready(f"reload refused: {e}"[:200])
            return
        except Exception as e:  # a bug must not end the reload task in silence
            server.reloads[1] += 1
            log.exception("SIGHUP: configuration not reloaded, the running one stays: "
                          "unexpected %s: %s", type(e).__name__, e)
            notifier.ready(f"reload failed: {type(e).__name__}: {e}"[:200])
            return
        server.reloads[0] += 1
        server.reloaded_at = time.time()
        log.info("SIGHUP: configuration reloaded (%s)",
                 "; ".join(changed) or "no change")
        if server.certs is not certs and server.certs is not None and (
                server.certs.info is not None):
            print(f"natftp: TLS certificate reloaded, SHA-256 fingerprint "
                  f"{server.certs.info.fingerprint}", flush=True)
        notifier.ready(_status_line(server))

    def on_hup() -> None:
        # one reload at a time; a SIGHUP during one runs after it
        prev = reloading[-1] if reloading else None

        async def run() -> None:
            if prev is not None:
                await asyncio.gather(prev, return_exceptions=True)
            await reload()
        reloading[:] = [loop.create_task(run())]

    def on_usr1() -> None:
        try:
            logsetup.reopen()
            if server.xferlog is not None:
                server.xferlog.reopen()
        except OSError as e:
            log.error("SIGUSR1: cannot reopen the log files (%s); still writing to the "
                      "old ones", e)
            return
        log.info("SIGUSR1: log files reopened")

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    notifier.ready(_status_line(server))
    await stop.wait()
    # a second signal while stopping: do not wait for a slow router's removals
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.zeroconf.hurry)
    log.info("stopping (signal)")
    notifier.stopping("stopping: aborting transfers, closing sessions")
    for t in reloading:
        t.cancel()
    await server.stop("server stopping")
    print("natftp: stopped", flush=True)
    return 0


def serve_config(cfg: ServerConfig, source: _Source, loop: str) -> int:
    """Serve ``cfg`` until a signal stops it; the exit status. In the ``natftp``
    command's own process this does not return: it becomes the server (see above)."""
    if _is_the_command():
        _exec_server(cfg, source, loop)
    with asyncio.Runner(loop_factory=_pick_loop(loop)) as runner:
        return runner.run(_run(cfg, source))


def _is_the_command() -> bool:
    """Whether this process is ``natftp ...`` or ``python -m natftp ...`` (not pytest or
    another program that called natftp.cli.main)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        return spec.name in ("natftp", "natftp.__main__")
    return os.path.basename(sys.argv[0]) == "natftp"


def _exec_server(cfg: ServerConfig, source: _Source, loop: str) -> None:
    """Become ``python -m natftp.server.run FD`` (returns only if that cannot start)."""
    import subprocess

    try:
        payload = pickle.dumps((cfg, source, loop), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        logging.getLogger("natftp.server").debug("serving in this process: %s", e)
        return
    fd = os.memfd_create("natftp-serve-config", 0)  # no MFD_CLOEXEC: the exec keeps it
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    # -X options, -O... as this interpreter was started (coverage, importtime)
    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execv(sys.executable, [sys.executable, *flags, "-m", "natftp.server.run", str(fd)])


def main() -> None:
    """``python -m natftp.server.run FD``: the configuration from FD, then serve."""
    fd = int(sys.argv[1])
    with os.fdopen(fd, "rb") as f:
        cfg, source, loop = pickle.load(f)
    try:
        logsetup.setup(cfg.log_level.upper(), file=cfg.log.file, fmt=cfg.log.format)
    except OSError as e:  # opened once already before the exec: changed in between
        print(f"natftp serve: configuration error: "
              f"{unwritable('log.file', cfg.log.file, e)}", file=sys.stderr)
        raise SystemExit(2) from None
    with asyncio.Runner(loop_factory=_pick_loop(loop)) as runner:
        rc = runner.run(_run(cfg, source))
    raise SystemExit(rc)


if __name__ == "__main__":
    main()
