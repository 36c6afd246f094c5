"""`natftp ls|get|put|mirror|rm|mkdir|mv`: the client from a shell.

Exit codes (stable; scripts may rely on them):
  0 ok
  1 unexpected error (a bug: please report it)
  2 usage error (bad option, bad URL, both or neither side of mirror a URL)
  3 connection failed or lost (refused, unreachable, DNS, server closed it)
  4 login refused (user name or password)
  5 refused by the server with a 5xx reply (not found, permission denied), or a local
    file that is missing or unreadable
  6 transfer failed (no data connection could be made, one broke, a 4xx reply)
  7 timeout
  8 TLS failed (handshake, certificate verification, fingerprint pin)
  141 standard output closed by its reader (`natftp get URL - | head`), quietly, as for
      a process that SIGPIPE ended
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import posixpath
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from natftp.client._async import Client, Mode
from natftp.client.url import netrc_credentials
from natftp.ftpio.errors import (
    CertificateError,
    ConnectionFailed,
    DataConnectionError,
    FTPError,
    LoginError,
    PermanentError,
    ReplyError,
    TimeoutError,
    TLSError,
    TransientError,
)
from natftp.proto.listparse import Entry
from natftp.proto.url import FTPURL, URLError, is_url, mask, parse_url

if TYPE_CHECKING:
    import typer

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONNECT, EXIT_LOGIN = 0, 1, 2, 3, 4
EXIT_REFUSED, EXIT_TRANSFER, EXIT_TIMEOUT, EXIT_TLS = 5, 6, 7, 8
EXIT_PIPE = 141  # what a shell reports for a process that SIGPIPE ended

EPILOG = ("Exit codes: 0 ok, 2 usage, 3 connection, 4 login, 5 refused/not found (5xx), "
          "6 transfer, 7 timeout, 8 TLS, 141 stdout closed by its reader. Credentials: "
          "URL, --user, or ~/.netrc. URL paths are relative to the login directory (curl "
          "style); %2F makes one absolute.")


class UsageError(Exception):
    """A bad option or argument found after parsing (both --active and --passive, a
    --cacert that is not PEM...): one line, exit 2."""


def echo(text: str, err: bool = False) -> None:
    """One line out, flushed at once (as click's echo: a closed pipe shows up here,
    inside the command's error handling, not at the interpreter's exit)."""
    out = sys.stderr if err else sys.stdout
    out.write(text + "\n")
    out.flush()


# -- the commands' parameters: one table, two front-ends ---------------------------------
#
# `natftp ls|get|...` runs from this table through argparse (:func:`run`): a client
# command in a loop of a script starts in tens of milliseconds, without typer (which
# alone costs ~150 ms to import and build). The full typer app (`natftp.cli.app`: shell
# completion, tests walking every command) gets the same commands from the same table
# (:func:`register`).

@dataclass(frozen=True)
class Param:
    """One argument or option. ``flags`` empty: a positional argument."""

    name: str
    flags: tuple[str, ...] = ()
    kind: type = str  # bool (a flag), str or float
    default: Any = None
    help: str = ""
    metavar: str | None = None
    required: bool = False
    minimum: float | None = None

    @property
    def label(self) -> str:
        return self.metavar or self.name.upper()


def arg(name: str, help: str, *, required: bool = True) -> Param:
    return Param(name, (), str, None, help, required=required)


def flag(name: str, *flags: str, help: str) -> Param:
    return Param(name, flags, bool, False, help)


def opt(name: str, *flags: str, help: str, kind: type = str, default: Any = None,
        metavar: str | None = None, minimum: float | None = None) -> Param:
    return Param(name, flags, kind, default, help, metavar, minimum=minimum)


COMMON: tuple[Param, ...] = (
    opt("user", "--user", "-u", metavar="USER[:PASSWORD]",
        help="Log in as USER (password from here, ~/.netrc, or a prompt)."),
    opt("netrc_file", "--netrc-file", help="Read credentials from this file, not ~/.netrc."),
    flag("verbose", "--verbose", "-v", help="Show the FTP dialogue (passwords masked)."),
    flag("quiet", "--quiet", "-q", help="No progress bars."),
    flag("active", "--active", help="Only active mode (EPRT/PORT): the server connects to us."),
    flag("passive", "--passive", help="Only passive modes (EPSV, PASV); never active."),
    flag("no_epsv", "--no-epsv", help="Skip EPSV; start with PASV."),
    flag("trust_pasv_address", "--trust-pasv-address",
         help="Connect to the address PASV names even when it differs from the server's "
              "(off by default: CVE-2020-8284, NATed servers advertising private IPs)."),
    opt("active_address", "--active-address", metavar="IP",
        help="Address to tell the server in active mode (our public IP behind NAT)."),
    flag("active_discover", "--active-discover",
         help="Active mode behind a home router: learn our public address (UPnP, "
              "NAT-PMP, PCP, cloud metadata) and map our listening port on the "
              "router; removed when done."),
    opt("timeout", "--timeout", kind=float, default=30.0, minimum=0.1,
        help="Seconds to wait for any reply or data."),
    opt("data_timeout", "--data-timeout", kind=float, default=5.0, minimum=0.1,
        help="Seconds to open a data connection before trying the next mode."),
    flag("tls", "--tls", help="Explicit FTPS (AUTH TLS) on an ftp:// URL. ftpes:// "
                              "implies it; ftps:// is implicit TLS."),
    flag("insecure", "--insecure", "-k", help="Do not verify the server certificate."),
    opt("cacert", "--cacert", metavar="FILE", help="Verify the server against these CAs."),
    opt("fingerprint", "--fingerprint", metavar="SHA256",
        help="Trust exactly the certificate with this SHA-256 fingerprint."),
)

CommandFn = Callable[..., Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Command:
    name: str
    fn: CommandFn
    params: tuple[Param, ...]

    @property
    def help(self) -> str:
        return inspect.cleandoc(self.fn.__doc__ or "")

    @property
    def all_params(self) -> tuple[Param, ...]:
        return self.params + COMMON


#: the client's commands, in the order `natftp --help` lists them
COMMANDS: dict[str, Command] = {}


def command(name: str, *params: Param) -> Callable[[CommandFn], CommandFn]:
    """Declare an async command ``fn(conn, **own)``; its docstring is its help."""
    def deco(fn: CommandFn) -> CommandFn:
        COMMANDS[name] = Command(name, fn, params)
        return fn
    return deco


# -- front-end 1: argparse (the `natftp` entry point) -------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(message)


def _parser(cmd: Command) -> _Parser:
    p = _Parser(prog=f"natftp {cmd.name}", add_help=False, allow_abbrev=False,
                exit_on_error=False)
    for prm in cmd.all_params:
        if not prm.flags:
            p.add_argument(prm.name, nargs=None if prm.required else "?",
                           metavar=prm.label)
        elif prm.kind is bool:
            p.add_argument(*prm.flags, dest=prm.name, action="store_true")
        else:
            p.add_argument(*prm.flags, dest=prm.name, default=prm.default,
                           metavar=prm.label)
    return p


def _option_text(prm: Param) -> str:
    flags = sorted(prm.flags, key=lambda f: (f.startswith("--"), f))
    text = ", ".join(flags)
    if prm.kind is not bool:
        text += f" {prm.metavar or {str: 'TEXT', float: 'FLOAT'}[prm.kind]}"
    return text


def help_text(cmd: Command) -> str:
    """``natftp CMD --help``: usage, the docstring, arguments, options, the epilog."""
    import textwrap

    width = max(40, min(int(os.environ.get("COLUMNS", "0") or 0) or 100, 120))
    args = [p for p in cmd.params if not p.flags]
    usage = " ".join(p.label if p.required else f"[{p.label}]" for p in args)
    out = [f"Usage: natftp {cmd.name} [OPTIONS] {usage}", ""]
    out += ["  " + ln for ln in textwrap.fill(cmd.help, width - 2).splitlines()] + [""]
    rows: list[tuple[str, str]] = []
    for p in args:
        rows.append((p.label, p.help + ("  [required]" if p.required else "")))
    opts = [(_option_text(p), p.help + (f"  [default: {p.default}]" if p.kind is float
                                        else "")) for p in cmd.all_params if p.flags]
    opts.append(("--help", "Show this message and exit."))
    left = min(34, max(len(a) for a, _ in rows + opts) + 2)
    for title, block in (("Arguments", rows), ("Options", opts)):
        if not block:
            continue
        out.append(f"{title}:")
        for a, h in block:
            lines = textwrap.wrap(h, max(20, width - left - 2)) or [""]
            if len(a) + 2 > left:
                out.append(f"  {a}")
                out += [" " * (left + 2) + ln for ln in lines]
            else:
                out.append(f"  {a.ljust(left)}{lines[0]}")
                out += [" " * (left + 2) + ln for ln in lines[1:]]
        out.append("")
    out += ["  " + ln for ln in textwrap.fill(EPILOG, width - 2).splitlines()]
    return "\n".join(out)


def _values(cmd: Command, ns: argparse.Namespace) -> dict[str, Any]:
    kw = vars(ns)
    for p in cmd.all_params:
        if p.kind is float and kw[p.name] is not None and not isinstance(kw[p.name], float):
            try:
                kw[p.name] = float(kw[p.name])
            except ValueError:
                raise UsageError(f"invalid value for '{p.flags[0]}': {kw[p.name]!r} is not "
                                 "a number") from None
        if p.minimum is not None and kw[p.name] is not None and kw[p.name] < p.minimum:
            raise UsageError(f"invalid value for '{p.flags[0]}': {kw[p.name]:g} is below "
                             f"the minimum {p.minimum:g}")
    return kw


def run(name: str, argv: Sequence[str]) -> int:
    """``natftp NAME ARGV...``: parse, run, and return the exit status; a usage error is
    one line naming the command (every URL's password masked), status 2."""
    cmd = COMMANDS[name]
    if "--help" in argv[:argv.index("--")] if "--" in argv else "--help" in argv:
        echo(help_text(cmd))
        return EXIT_OK
    try:
        kw = _values(cmd, _parser(cmd).parse_args(list(argv)))
    except (UsageError, argparse.ArgumentError) as e:
        echo(f"natftp {name}: {mask(str(e))} (see natftp {name} --help)", err=True)
        return EXIT_USAGE
    return invoke(cmd, kw)


# -- front-end 2: typer (the full app: completion, and every command in one tree) --------

def register(app: typer.Typer) -> None:
    """Add the client's commands to the full `natftp` typer app."""
    import typer

    for cmd in COMMANDS.values():
        params = []
        for p in cmd.all_params:
            if not p.flags:
                default: Any = typer.Argument(... if p.required else None, help=p.help,
                                              metavar=p.label)
            else:
                default = typer.Option(p.default, *p.flags, help=p.help, metavar=p.metavar,
                                       min=p.minimum)
            ann = p.kind if p.kind is bool or p.required else p.kind | None
            if p.kind is float:
                ann = float
            params.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY,
                                            default=default, annotation=ann))

        def wrapper(_cmd: Command = cmd, **kw: Any) -> None:
            code = invoke(_cmd, kw)
            if code:
                raise typer.Exit(code)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__doc__ = cmd.fn.__doc__
        app.command(cmd.name, epilog=EPILOG)(wrapper)


# -- running a command -------------------------------------------------------------------

def invoke(cmd: Command, kw: dict[str, Any]) -> int:
    """Run ``cmd`` with parsed values; every error becomes one line on stderr and a
    documented exit status."""
    name = cmd.name
    names = [p.name for p in COMMON]
    conn = Conn(**{n: kw.pop(n) for n in names})
    warnings = _Warnings(name)
    logging.getLogger("natftp.client").addHandler(warnings)
    try:
        asyncio.run(cmd.fn(conn, **kw))
    except KeyboardInterrupt:
        echo("natftp: interrupted", err=True)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except UsageError as e:
        echo(f"natftp {name}: {mask(str(e))}", err=True)
        return EXIT_USAGE
    except (FTPError, URLError, OSError) as e:
        code = _exit_code(e)
        echo(f"natftp {name}: {mask(_describe(e, conn))}", err=True)
        return code
    except Exception as e:
        from natftp.client.mirror import MirrorError  # only mirror raises it
        if not isinstance(e, MirrorError):
            raise
        echo(f"natftp {name}: {e}", err=True)
        return EXIT_REFUSED
    finally:
        logging.getLogger("natftp.client").removeHandler(warnings)
    return EXIT_OK


@dataclass
class Conn:
    """The connection options every command shares."""

    user: str | None
    netrc_file: str | None
    verbose: bool
    quiet: bool
    active: bool
    passive: bool
    no_epsv: bool
    trust_pasv_address: bool
    active_address: str | None
    active_discover: bool
    timeout: float
    data_timeout: float
    tls: bool
    insecure: bool
    cacert: str | None
    fingerprint: str | None

    #: the URL of the session last made (a TLS failure's message reads its certificate)
    url: FTPURL | None = None

    def client(self, u: FTPURL) -> Client:
        """A client for ``u`` with these options, each checked first: a bad option is
        a usage error (exit 2) before anything goes on the network."""
        tls = u.tls or ("explicit" if self.tls else None)
        self._check(u, tls)
        user, password = u.user, u.password
        if self.user is not None:
            user, _, pw = self.user.partition(":")
            password = pw if _ else None
        if password is None:
            creds = netrc_credentials(u.host, self.netrc_file)
            if creds is not None and (user is None or creds[0] == user):
                user, password = creds
            elif user is not None and sys.stdin.isatty():
                import getpass
                password = getpass.getpass(f"Password for {user}@{u.host}: ")
        mode: Mode = "active" if self.active else "passive" if self.passive else "auto"
        verify: bool | str = self.cacert if self.cacert else not self.insecure
        self.url = u
        return Client(host=u.host, port=u.port, user=user, password=password,
                      timeout=self.timeout, data_timeout=self.data_timeout, mode=mode,
                      epsv=not self.no_epsv, trust_pasv_address=self.trust_pasv_address,
                      active_address=self.active_address,
                      active_discover=self.active_discover, tls=tls,  # type: ignore[arg-type]
                      verify=verify, fingerprint=self.fingerprint,
                      trace=_trace if self.verbose else None)

    def _check(self, u: FTPURL, tls: str | None) -> None:
        if self.active and self.passive:
            raise UsageError("--active and --passive exclude each other")
        if self.active_address is not None:
            from natftp.proto.addr import AddressError, ip
            try:
                ip(self.active_address)
            except (AddressError, ValueError):
                raise UsageError(f"--active-address {self.active_address!r} is not "
                                         "an IP address (our public address, e.g. "
                                         "203.0.113.7)") from None
        for flag, value in (("--fingerprint", self.fingerprint), ("--cacert", self.cacert)):
            if value is not None and tls is None:
                raise UsageError(
                    f"{flag} checks a TLS certificate, and {u.scheme}:// is plain FTP: use "
                    f"ftpes:// (explicit TLS) or ftps:// (implicit TLS), or add --tls")
        if self.fingerprint is not None:
            from natftp.ftpio.tls import normalise_fingerprint
            try:
                normalise_fingerprint(self.fingerprint)
            except ValueError:
                raise UsageError(
                    f"--fingerprint {self.fingerprint!r} is not a SHA-256 fingerprint: 64 "
                    "hex digits, colons allowed (natftp serve prints it at start: "
                    "SHA256:AB:CD:...)") from None
        if self.cacert is not None:
            import ssl

            from natftp.ftpio.tls import make_context
            if not os.path.isfile(self.cacert):
                raise UsageError(f"--cacert {self.cacert}: no such file")
            try:
                make_context(self.cacert)
            except (ssl.SSLError, OSError) as e:
                raise UsageError(f"--cacert {self.cacert}: not a PEM file of CA "
                                         f"certificates ({e.strerror or e.reason or e})"
                                         ) from None

    @property
    def show_progress(self) -> bool:
        return not self.quiet and sys.stdout.isatty()


def _trace(direction: str, line: str) -> None:
    sys.stderr.write(f"{direction} {line}\n")
    sys.stderr.flush()


def _exit_code(e: BaseException) -> int:
    if isinstance(e, TLSError):
        return EXIT_TLS
    if isinstance(e, TimeoutError):
        return EXIT_TIMEOUT
    if isinstance(e, LoginError):
        return EXIT_LOGIN
    if isinstance(e, ConnectionFailed):
        return EXIT_CONNECT
    if isinstance(e, (DataConnectionError, TransientError)):
        return EXIT_TRANSFER
    if isinstance(e, (PermanentError, FileNotFoundError, PermissionError, IsADirectoryError,
                      NotADirectoryError)):
        return EXIT_REFUSED
    if isinstance(e, ReplyError):
        return EXIT_TRANSFER
    if isinstance(e, (URLError, UsageError)):
        return EXIT_USAGE
    return EXIT_ERROR


def _describe(e: BaseException, conn: Conn) -> str:
    if isinstance(e, DataConnectionError):
        return (f"{e}. The server's data connections did not get through; try --active "
                "(if the server can reach us) or check the server's passive port range "
                "and firewall (`natftp doctor URL` explains)")
    if isinstance(e, CertificateError) and conn.url is not None:
        return f"{e}. Fix: {_trust_fix(conn.url, conn.timeout)}"
    if isinstance(e, OSError) and not isinstance(e, FTPError):
        return f"{e.strerror or e}: {e.filename}" if e.filename else str(e)
    return str(e)


def _trust_fix(u: FTPURL, timeout: float) -> str:
    """How to trust a certificate that did not verify, with the fingerprint it has (read
    again on a fresh connection, nothing sent but AUTH TLS) for the user to compare with
    the one the server printed (natftp serve prints it at start)."""
    from natftp.ftpio.control import presented_certificate
    from natftp.tls import fingerprint

    der = asyncio.run(presented_certificate(u.host, u.port, implicit=u.tls == "implicit",
                                            timeout=min(timeout, 10.0)))
    pin = (f"pin it with --fingerprint SHA256:{fingerprint(der)} once you have checked "
           "that the server printed the same (natftp serve prints its fingerprint at "
           "start)" if der else "pin the certificate with --fingerprint SHA256:... (natftp "
           "serve prints it at start)")
    return (f"{pin}; or trust the CA that signed it with --cacert FILE; or skip the check "
            "with -k (--insecure: no protection against a machine in the middle)")


class _Warnings(logging.Handler):
    """The client's warnings (``nothing to resume``...) as ``natftp CMD: ...`` lines."""

    def __init__(self, command: str) -> None:
        super().__init__(logging.WARNING)
        self.command = command

    def emit(self, record: logging.LogRecord) -> None:
        echo(f"natftp {self.command}: {mask(record.getMessage())}", err=True)


def _quiet_stdout() -> None:
    """After the reader of stdout went away: point stdout at /dev/null, so that the
    interpreter's final flush does not complain about the pipe either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def _url(text: str) -> FTPURL:
    if not is_url(text):
        raise URLError(f"{mask(text)!r} is not an ftp://, ftps:// or ftpes:// URL")
    return parse_url(text)


class _Bar:
    """A rich progress bar (rate, ETA) when stdout is a terminal; nothing otherwise."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.progress: Any = None
        self.task: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     DownloadColumn(), TransferSpeedColumn(),
                                     TimeRemainingColumn(), console=Console(stderr=True),
                                     transient=False)
            self.task = self.progress.add_task(label, total=None)

    def __enter__(self) -> _Bar:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)


def _entry_line(e: Entry) -> str:
    kind = {"dir": "d", "file": "-", "link": "l"}.get(e.type, "?")
    size = "" if e.size is None else str(e.size)
    when = e.modified.strftime("%Y-%m-%d %H:%M") if e.modified else "-" * 16
    name = e.name + (f" -> {e.target}" if e.target else "")
    return f"{kind} {size:>12} {when} {name}"


# -- the commands ---------------------------------------------------------------------


@command("ls", arg("url", "ftp://[user[:pass]@]host[:port]/dir"),
         flag("long", "--long", "-l", help="Type, size, time and name."),
         flag("as_json", "--json", help="JSON lines."))
async def ls(conn: Conn, url: str, long: bool, as_json: bool) -> None:
    """List a remote directory (MLSD, or LIST parsed for Unix and Windows servers)."""
    u = _url(url)
    async with conn.client(u) as ftp:
        try:
            entries = await ftp.list(u.path)
        except PermanentError as listing:
            try:
                entries = [await ftp.stat(u.path)]  # a file: show its own entry
            except PermanentError:
                raise listing from None
            if entries[0].is_dir:
                raise
    for e in sorted(entries, key=lambda e: e.name):
        if as_json:
            import json
            echo(json.dumps({"name": e.name, "type": e.type, "size": e.size,
                             "modified": e.modified.isoformat() if e.modified else None},
                            ensure_ascii=False))
        elif long:
            echo(_entry_line(e))
        else:
            echo(e.name + ("/" if e.is_dir else ""))


@command("get", arg("url", "Remote file: ftp://host/dir/file"),
         arg("dest", "Local file or directory (default: the name in the current dir; "
                     "'-' for stdout).", required=False),
         flag("resume", "--continue", "-c", help="Resume a partial download (REST)."))
async def get(conn: Conn, url: str, dest: str | None, resume: bool) -> None:
    """Download one file."""
    u = _url(url)
    if not u.path or u.path.endswith("/"):
        raise UsageError(f"{u} names a directory; use `natftp mirror`")
    name = posixpath.basename(u.path)
    target = dest or name
    if target != "-" and os.path.isdir(target):
        target = os.path.join(target, name)
    async with conn.client(u) as ftp:
        if target == "-":
            # a reader that stops early (| head) ends the download: the transfer is
            # aborted, and the wrapper exits quietly
            await ftp.download(u.path, sys.stdout.buffer)
            sys.stdout.flush()
            return
        with _Bar(conn.show_progress, name) as bar:
            await ftp.download(u.path, target, resume=resume, progress=bar)


@command("put", arg("src", "Local file ('-' for stdin)."),
         arg("url", "Remote file or directory (ending in /): ftp://host/dir/"),
         flag("resume", "--continue", "-c", help="Resume a partial upload (REST/APPE)."))
async def put(conn: Conn, src: str, url: str, resume: bool) -> None:
    """Upload one file."""
    u = _url(url)
    if src != "-" and not os.path.isfile(src):
        raise FileNotFoundError(2, "no such local file", src)
    name = "stdin" if src == "-" else os.path.basename(src)
    async with conn.client(u) as ftp:
        remote = u.path
        if not remote or remote.endswith("/"):
            remote = remote + name
        else:
            try:
                if (await ftp.stat(remote)).is_dir:
                    remote = posixpath.join(remote, name)
            except PermanentError:
                pass
        if src == "-":
            await ftp.upload(sys.stdin.buffer, remote)
            return
        with _Bar(conn.show_progress, name) as bar:
            await ftp.upload(src, remote, resume=resume, progress=bar)


@command("mirror", arg("src", "Source: a local dir or a URL."),
         arg("dst", "Destination: a URL or a local dir."),
         flag("delete", "--delete", help="Delete what the source lacks."),
         flag("dry_run", "--dry-run", "-n", help="Print the plan; change nothing."))
async def mirror(conn: Conn, src: str, dst: str, delete: bool, dry_run: bool) -> None:
    """Make DST a copy of SRC (one side a URL); compares size and modification time."""
    if is_url(src) == is_url(dst):
        raise UsageError("exactly one of SRC and DST must be an ftp:// URL")

    def show(a: Any) -> None:
        if not conn.quiet:
            echo(str(a))

    if is_url(src):
        u = _url(src)
        async with conn.client(u) as ftp:
            result = await ftp.mirror_down(u.path.rstrip("/"), dst, delete=delete,
                                           dry_run=dry_run, on_action=show)
    else:
        u = _url(dst)
        async with conn.client(u) as ftp:
            result = await ftp.mirror_up(src, u.path.rstrip("/"), delete=delete,
                                         dry_run=dry_run, on_action=show)
    if dry_run:
        for a in result.actions:
            echo(f"would {a}")
    if not conn.quiet:
        echo(f"{'planned' if dry_run else 'done'}: {len(result.actions)} actions, "
                   f"{result.copied} files, {result.bytes} bytes", err=True)


@command("rm", arg("url", "Remote file (or directory with -r)."),
         flag("recursive", "--recursive", "-r", help="Remove a directory and its contents."))
async def rm(conn: Conn, url: str, recursive: bool) -> None:
    """Remove a remote file (or an empty directory, or a tree with -r)."""
    u = _url(url)
    path = u.path.rstrip("/")
    if not path:
        raise UsageError("refusing to remove the login directory")
    async with conn.client(u) as ftp:
        try:
            await ftp.remove(path)
        except PermanentError:
            if not await ftp._is_dir(path):
                raise
            if recursive:
                from natftp.client.mirror import _remove_tree
                await _remove_tree(ftp, path)
            else:
                await ftp.rmdir(path)


@command("mkdir", arg("url", "Remote directory to create."),
         flag("parents", "--parents", "-p", help="Create parents; no error if it exists."))
async def mkdir(conn: Conn, url: str, parents: bool) -> None:
    """Create a remote directory."""
    u = _url(url)
    async with conn.client(u) as ftp:
        await ftp.mkdir(u.path.rstrip("/"), parents=parents, exist_ok=parents)


@command("mv", arg("url", "Remote file or directory."),
         arg("new", "New path (same rules as the URL's path) or a URL on the same server."))
async def mv(conn: Conn, url: str, new: str) -> None:
    """Rename or move a remote file or directory. A NEW that ends in / or names an
    existing directory receives it under its own name (as `mv` and `natftp put`)."""
    u = _url(url)
    target = _url(new).path if is_url(new) else new.lstrip("/")
    name = posixpath.basename(u.path.rstrip("/"))
    async with conn.client(u) as ftp:
        if target.endswith("/") or not target:
            target += name
        elif await ftp._can_enter(target):
            target = posixpath.join(target, name)
        await ftp.rename(u.path, target)
