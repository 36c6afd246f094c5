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

import asyncio
import functools
import inspect
import json
import logging
import os
import posixpath
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import typer

from natftp.client._async import Client, Mode
from natftp.client.mirror import MirrorError
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

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CONNECT, EXIT_LOGIN = 0, 1, 2, 3, 4
EXIT_REFUSED, EXIT_TRANSFER, EXIT_TIMEOUT, EXIT_TLS = 5, 6, 7, 8
EXIT_PIPE = 141  # what a shell reports for a process that SIGPIPE ended

EPILOG = ("Exit codes: 0 ok, 2 usage, 3 connection, 4 login, 5 refused/not found (5xx), "
          "6 transfer, 7 timeout, 8 TLS, 141 stdout closed by its reader. Credentials: "
          "URL, --user, or ~/.netrc. URL paths are relative to the login directory (curl "
          "style); %2F makes one absolute.")

T = TypeVar("T")


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
                password = typer.prompt(f"Password for {user}@{u.host}", hide_input=True,
                                        default="", show_default=False)
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
            raise typer.BadParameter("--active and --passive exclude each other")
        if self.active_address is not None:
            from natftp.proto.addr import AddressError, ip
            try:
                ip(self.active_address)
            except (AddressError, ValueError):
                raise typer.BadParameter(f"--active-address {self.active_address!r} is not "
                                         "an IP address (our public address, e.g. "
                                         "203.0.113.7)") from None
        for flag, value in (("--fingerprint", self.fingerprint), ("--cacert", self.cacert)):
            if value is not None and tls is None:
                raise typer.BadParameter(
                    f"{flag} checks a TLS certificate, and {u.scheme}:// is plain FTP: use "
                    f"ftpes:// (explicit TLS) or ftps:// (implicit TLS), or add --tls")
        if self.fingerprint is not None:
            from natftp.ftpio.tls import normalise_fingerprint
            try:
                normalise_fingerprint(self.fingerprint)
            except ValueError:
                raise typer.BadParameter(
                    f"--fingerprint {self.fingerprint!r} is not a SHA-256 fingerprint: 64 "
                    "hex digits, colons allowed (natftp serve prints it at start: "
                    "SHA256:AB:CD:...)") from None
        if self.cacert is not None:
            import ssl

            from natftp.ftpio.tls import make_context
            if not os.path.isfile(self.cacert):
                raise typer.BadParameter(f"--cacert {self.cacert}: no such file")
            try:
                make_context(self.cacert)
            except (ssl.SSLError, OSError) as e:
                raise typer.BadParameter(f"--cacert {self.cacert}: not a PEM file of CA "
                                         f"certificates ({e.strerror or e.reason or e})"
                                         ) from None

    @property
    def show_progress(self) -> bool:
        return not self.quiet and sys.stdout.isatty()


def _trace(direction: str, line: str) -> None:
    sys.stderr.write(f"{direction} {line}\n")
    sys.stderr.flush()


_COMMON: list[inspect.Parameter] = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann)
    for name, ann, default in [
        ("user", str | None, typer.Option(
            None, "--user", "-u", metavar="USER[:PASSWORD]",
            help="Log in as USER (password from here, ~/.netrc, or a prompt).")),
        ("netrc_file", str | None, typer.Option(
            None, "--netrc-file", help="Read credentials from this file, not ~/.netrc.")),
        ("verbose", bool, typer.Option(
            False, "--verbose", "-v", help="Show the FTP dialogue (passwords masked).")),
        ("quiet", bool, typer.Option(False, "--quiet", "-q", help="No progress bars.")),
        ("active", bool, typer.Option(
            False, "--active", help="Only active mode (EPRT/PORT): the server connects to us.")),
        ("passive", bool, typer.Option(
            False, "--passive", help="Only passive modes (EPSV, PASV); never active.")),
        ("no_epsv", bool, typer.Option(False, "--no-epsv", help="Skip EPSV; start with PASV.")),
        ("trust_pasv_address", bool, typer.Option(
            False, "--trust-pasv-address",
            help="Connect to the address PASV names even when it differs from the server's "
                 "(off by default: CVE-2020-8284, NATed servers advertising private IPs).")),
        ("active_address", str | None, typer.Option(
            None, "--active-address", metavar="IP",
            help="Address to tell the server in active mode (our public IP behind NAT).")),
        ("active_discover", bool, typer.Option(
            False, "--active-discover",
            help="Active mode behind a home router: learn our public address (UPnP, "
                 "NAT-PMP, PCP, cloud metadata) and map our listening port on the "
                 "router; removed when done.")),
        ("timeout", float, typer.Option(30.0, "--timeout", min=0.1,
                                        help="Seconds to wait for any reply or data.")),
        ("data_timeout", float, typer.Option(
            5.0, "--data-timeout", min=0.1,
            help="Seconds to open a data connection before trying the next mode.")),
        ("tls", bool, typer.Option(
            False, "--tls", help="Explicit FTPS (AUTH TLS) on an ftp:// URL. ftpes:// "
                                 "implies it; ftps:// is implicit TLS.")),
        ("insecure", bool, typer.Option(
            False, "--insecure", "-k", help="Do not verify the server certificate.")),
        ("cacert", str | None, typer.Option(
            None, "--cacert", metavar="FILE", help="Verify the server against these CAs.")),
        ("fingerprint", str | None, typer.Option(
            None, "--fingerprint", metavar="SHA256",
            help="Trust exactly the certificate with this SHA-256 fingerprint.")),
    ]
]


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
    if isinstance(e, (URLError, typer.BadParameter)):
        return EXIT_USAGE
    return EXIT_ERROR


def _command(app: typer.Typer, name: str) -> Callable[[Callable[..., Coroutine[Any, Any, None]]],
                                                        Callable[..., None]]:
    """Register an async command ``fn(conn, **own_args)`` with the shared options added,
    run it, and turn every error into one line on stderr and a documented exit code."""

    def deco(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "conn"]
        names = [p.name for p in _COMMON]

        @functools.wraps(fn)
        def wrapper(**kw: Any) -> None:
            conn = Conn(**{n: kw.pop(n) for n in names})
            warnings = _Warnings(name)
            logging.getLogger("natftp.client").addHandler(warnings)
            try:
                asyncio.run(fn(conn, **kw))
            except typer.Exit:
                raise
            except KeyboardInterrupt:
                typer.echo("natftp: interrupted", err=True)
                raise typer.Exit(130) from None
            except BrokenPipeError:
                _quiet_stdout()
                raise typer.Exit(EXIT_PIPE) from None
            except typer.BadParameter as e:
                typer.echo(f"natftp {name}: {mask(str(e))}", err=True)
                raise typer.Exit(EXIT_USAGE) from None
            except MirrorError as e:
                typer.echo(f"natftp {name}: {e}", err=True)
                raise typer.Exit(EXIT_REFUSED) from None
            except (FTPError, URLError, OSError) as e:
                code = _exit_code(e)
                typer.echo(f"natftp {name}: {mask(_describe(e, conn))}", err=True)
                raise typer.Exit(code) from None
            finally:
                logging.getLogger("natftp.client").removeHandler(warnings)

        params = own + _COMMON
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # type: ignore[attr-defined]
        app.command(name, epilog=EPILOG)(wrapper)
        return wrapper

    return deco


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
        typer.echo(f"natftp {self.command}: {mask(record.getMessage())}", err=True)


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


def register(app: typer.Typer) -> None:
    """Add the client's commands to the `natftp` app."""

    @_command(app, "ls")
    async def ls(conn: Conn,
                 url: str = typer.Argument(..., help="ftp://[user[:pass]@]host[:port]/dir"),
                 long: bool = typer.Option(False, "--long", "-l",
                                           help="Type, size, time and name."),
                 as_json: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
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
                typer.echo(json.dumps({"name": e.name, "type": e.type, "size": e.size,
                                       "modified": e.modified.isoformat() if e.modified
                                       else None}, ensure_ascii=False))
            elif long:
                typer.echo(_entry_line(e))
            else:
                typer.echo(e.name + ("/" if e.is_dir else ""))

    @_command(app, "get")
    async def get(conn: Conn,
                  url: str = typer.Argument(..., help="Remote file: ftp://host/dir/file"),
                  dest: str = typer.Argument(None, help="Local file or directory "
                                             "(default: the name in the current dir; "
                                             "'-' for stdout)."),
                  resume: bool = typer.Option(False, "--continue", "-c",
                                              help="Resume a partial download (REST).")
                  ) -> None:
        """Download one file."""
        u = _url(url)
        if not u.path or u.path.endswith("/"):
            raise typer.BadParameter(f"{u} names a directory; use `natftp mirror`")
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

    @_command(app, "put")
    async def put(conn: Conn,
                  src: str = typer.Argument(..., help="Local file ('-' for stdin)."),
                  url: str = typer.Argument(..., help="Remote file or directory (ending "
                                            "in /): ftp://host/dir/"),
                  resume: bool = typer.Option(False, "--continue", "-c",
                                              help="Resume a partial upload (REST/APPE).")
                  ) -> None:
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

    @_command(app, "mirror")
    async def mirror(conn: Conn,
                     src: str = typer.Argument(..., help="Source: a local dir or a URL."),
                     dst: str = typer.Argument(..., help="Destination: a URL or a local dir."),
                     delete: bool = typer.Option(False, "--delete",
                                                 help="Delete what the source lacks."),
                     dry_run: bool = typer.Option(False, "--dry-run", "-n",
                                                  help="Print the plan; change nothing.")
                     ) -> None:
        """Make DST a copy of SRC (one side a URL); compares size and modification time."""
        if is_url(src) == is_url(dst):
            raise typer.BadParameter("exactly one of SRC and DST must be an ftp:// URL")

        def show(a: Any) -> None:
            if not conn.quiet:
                typer.echo(str(a))

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
                typer.echo(f"would {a}")
        if not conn.quiet:
            typer.echo(f"{'planned' if dry_run else 'done'}: {len(result.actions)} actions, "
                       f"{result.copied} files, {result.bytes} bytes", err=True)

    @_command(app, "rm")
    async def rm(conn: Conn,
                 url: str = typer.Argument(..., help="Remote file (or directory with -r)."),
                 recursive: bool = typer.Option(False, "--recursive", "-r",
                                                help="Remove a directory and its contents.")
                 ) -> None:
        """Remove a remote file (or an empty directory, or a tree with -r)."""
        u = _url(url)
        path = u.path.rstrip("/")
        if not path:
            raise typer.BadParameter("refusing to remove the login directory")
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

    @_command(app, "mkdir")
    async def mkdir(conn: Conn,
                    url: str = typer.Argument(..., help="Remote directory to create."),
                    parents: bool = typer.Option(False, "--parents", "-p",
                                                 help="Create parents; no error if it exists.")
                    ) -> None:
        """Create a remote directory."""
        u = _url(url)
        async with conn.client(u) as ftp:
            await ftp.mkdir(u.path.rstrip("/"), parents=parents, exist_ok=parents)

    @_command(app, "mv")
    async def mv(conn: Conn,
                 url: str = typer.Argument(..., help="Remote file or directory."),
                 new: str = typer.Argument(..., help="New path (same rules as the URL's "
                                           "path) or a URL on the same server.")) -> None:
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
