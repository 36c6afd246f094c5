"""What each command does. Preconditions (logged in, argument given, permission) are
checked by the session from the table in :mod:`natftp.server.commands` before a handler
runs, so handlers hold only the command's own logic.

A handler replies itself and returns None, or returns a coroutine that the session runs
as its busy task (transfers, the password check).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat as stat_
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from natftp.nat import ports
from natftp.nat.policy import NoUsableAddress, Rule
from natftp.proto import addr, listing, paths
from natftp.proto.ascii import ToWire
from natftp.proto.paths import PathError
from natftp.proto.replies import Reply
from natftp.proto.security import auth_mechanism
from natftp.server import data
from natftp.server.config import Permissions, User
from natftp.server.guard import Busy
from natftp.server.listings import Listing, ObjectListing, long_line, name_line
from natftp.storage.local import LocalStorage, StorageError
from natftp.storage.s3 import S3Storage

if TYPE_CHECKING:
    from natftp.server.session import Session

log = logging.getLogger("natftp.server")

Result = Coroutine[Any, Any, None] | None
ANONYMOUS_NAMES = ("anonymous", "ftp")
#: SIZE in TYPE A reads the file to count its line ends: up to this size (RFC 3659 §4
#: allows 550 when the exact size is too costly to compute)
ASCII_SIZE_MAX = 64 << 20


def vpath(s: Session, verb: str, arg: str) -> str | None:
    """The virtual path for ``arg``, or None after a 550 (an escape attempt is logged) or
    a 553 (a name with control characters)."""
    try:
        return paths.resolve(s.cwd, arg)
    except PathError as e:
        if e.code == 550:  # 553: a name with control characters, not an escape
            s.server.stats.refused("path_escape")
        s.refuse(e.code, f"{verb} refused: {e}.", level=logging.WARNING)
        return None


# -- login -------------------------------------------------------------------------

def user(s: Session, arg: str) -> Result:
    name = arg.strip()
    if s.user is not None:
        # RFC 959 §4.1.1: USER at any time flushes the login and starts a new one;
        # transfer parameters stay (a transfer in progress ended before this ran)
        _leave(s, f"USER {name} sent")
    need = tls_required(s, name)
    if need != "off" and s.tls_ctx is None:
        s.server.stats.refused("tls_required")
        s.refuse(530, f"TLS is required {_required_for(s, name)}: send AUTH TLS before "
                      f"USER (tls.required = \"{need}\"; e.g. curl --ssl-reqd, lftp "
                      "-e 'set ftp:ssl-force true', ftplib FTP_TLS).")
        return None
    s.pending_user = name
    if name.lower() in ANONYMOUS_NAMES:
        if not s.server.config.anonymous.enabled:
            s.refuse(530, "Anonymous login is disabled on this server "
                          "(anonymous.enabled = false / --anonymous).")
            s.pending_user = None
            return None
        s.reply(331, "Anonymous login ok; send your e-mail address as the password.")
        return None
    s.reply(331, f"Password required for {name}.")
    return None


def tls_required(s: Session, name: str | None = None) -> str:
    """The stricter of the server's and the user's tls.required: off, control or data.
    ``name``: the user about to log in; without it, the logged-in one (no lookup: this
    runs before every transfer)."""
    order = ("off", "control", "data")
    cfg = s.server.config
    u = cfg.user(name) if name is not None else s.user
    mine = u.tls_required if u is not None and u.tls_required else "off"
    return max(cfg.tls.required, mine, key=order.index)


def _required_for(s: Session, name: str) -> str:
    if s.server.config.tls.required != "off":
        return "on this server"
    return f'for user "{name}"'


def pass_(s: Session, arg: str) -> Result:
    if s.user is not None:
        s.reply(230, f"Already logged in as {s.login_name}.")
        return None
    if s.pending_user is None:
        s.refuse(503, "Send USER before PASS.")
        return None
    name, s.pending_user = s.pending_user, None
    ban = s.server.bans.banned(s.client_ip)
    if ban is not None:
        s.server.stats.refused("banned")
        _refuse_and_close(s, "banned", s.server.ban_text(ban), "address banned")
        return None
    return _login(s, name, arg)


def _refuse_and_close(s: Session, kind: str, text: str, why: str) -> None:
    """421 and close, the log line rate-limited (a flood of these must not flood it);
    the session ends as ``banned`` or ``login_busy`` in natftp_sessions_total."""
    s.refuse(421, text, level=logging.WARNING, kind=kind)
    s.end = "banned" if kind == "banned" else "login_busy"
    s.close(why)


async def _login(s: Session, name: str, password: str) -> None:
    cfg = s.server.config
    if name.lower() in ANONYMOUS_NAMES and cfg.anonymous.enabled:
        home = cfg.anonymous.home or cfg.root
        _enter(s, "anonymous", str(home), Permissions.read_only(), anonymous=True)
        s.reply(230, "Anonymous access granted; read-only.")
        return
    u = cfg.user(name)
    try:
        ok = await s.server.passwords.check(u, password)
    except Busy:
        _refuse_and_close(s, "busy", "Server busy checking other logins (limits."
                          "login_workers, limits.login_queue); try again in a moment.",
                          "password checks busy")
        return
    if not ok or u is None:
        s.server.stats.login(False)
        s.failures += 1
        ban = s.server.login_failed(s.client_ip)
        await asyncio.sleep(cfg.timeouts.login_failure_delay)
        why = "unknown user" if u is None else "wrong password"
        s.event("login failed for %r from %s (%s; attempt %d of %d)", name, s.client_ip, why,
                s.failures, cfg.limits.max_login_attempts, level=logging.WARNING)
        if ban is not None:
            s.end = "banned"
            s.reply(421, s.server.ban_text(ban))
            s.close("address banned")
            return
        if s.failures >= cfg.limits.max_login_attempts:
            s.server.stats.refused("login_attempts")
            s.end = "login_failed"
            s.reply(421, f"Login incorrect; {s.failures} failed attempts "
                         "(limits.max_login_attempts); closing the connection.")
            s.close("too many failed logins")
            return
        s.reply(530, "Login incorrect: unknown user or wrong password.")
        return
    _enter(s, u.name, str(u.home), u.permissions)
    s.reply(230, f"User {u.name} logged in.")


_WRITES = ("write", "delete", "rename", "mkdir", "chmod")
#: why a permission is off, for the refusal text (shared: sessions hold a reference)
_SOURCE_USER = {p: f"permissions.{p} = false" for p in ("list", "read", *_WRITES)}
_SOURCE_ANONYMOUS = {**_SOURCE_USER, **{p: "anonymous users are read-only" for p in _WRITES},
                     "chmod": "anonymous users are read-only: permissions.chmod is always "
                              "off for them"}
_SOURCE_READ_ONLY = {**_SOURCE_USER, **{p: "read_only = true / --read-only" for p in _WRITES}}


def _enter(s: Session, name: str, home: str, perms: Permissions, *,
           anonymous: bool = False) -> None:
    cfg = s.server.config
    source = _SOURCE_USER
    if anonymous:
        source = _SOURCE_ANONYMOUS
    elif cfg.read_only:
        perms = replace(perms, **{p: False for p in _WRITES})
        source = _SOURCE_READ_ONLY
    s.user = cfg.user(name) if not anonymous else None
    s.login_name = name
    s.perms, s.perm_source = perms, source
    objects = s.server.objects
    if objects is not None:
        # object storage: the home is a key prefix, the user's home relative to ROOT
        s.storage = objects.home(os.path.relpath(home, cfg.root).replace(os.sep, "/")
                                 .removeprefix("."))
        home = s.storage.home
    else:
        s.storage = LocalStorage(home)
    s.cwd = "/"
    if s.user is None:  # anonymous: a stand-in so "logged in" checks pass
        s.user = User(name=name, home=s.server.config.root, permissions=perms)
    s.server.stats.login(True)
    s.event("%s logged in from %s (home %s)", name, s.client_ip, home)


def _leave(s: Session, why: str) -> None:
    """Back to "connected, not logged in" (USER while logged in, REIN): the login and
    what belongs to it (home, permissions, working directory, a pending RNFR) go; failed
    login attempts still count."""
    s.event("%s logged out (%s)", s.login_name, why)
    s.user = None
    s.login_name = ""
    s.storage = None
    s.perms, s.perm_source = Permissions.read_only(), {}
    s.cwd = "/"
    s.rnfr = None
    s.pending_user = None


def rein(s: Session, arg: str) -> Result:
    # RFC 959 §4.1.1: queued behind a transfer in progress, so that one completes first
    if s.user is not None:
        _leave(s, "REIN")
    s.pending_user = None
    s.binary = False
    s.rest = 0
    s.epsv_all = False
    s.close_data()
    s.mlst_facts = listing.MLST_FACTS
    s.reply(220, "Session reinitialized: not logged in, transfer parameters reset (TLS "
                 "stays as it is); send USER.")
    return None


def quit_(s: Session, arg: str) -> Result:
    s.end = "quit"
    s.reply(221, "Goodbye.")
    s.close("QUIT")
    return None


# -- information -------------------------------------------------------------------

def noop(s: Session, arg: str) -> Result:
    s.reply(200, "NOOP ok.")
    return None


def syst(s: Session, arg: str) -> Result:
    s.reply(215, "UNIX Type: L8")
    return None



def opts(s: Session, arg: str) -> Result:
    name, _, rest = arg.strip().partition(" ")
    name = name.upper()
    if name == "UTF8":
        if rest.strip().upper() in ("ON", ""):
            s.reply(200, "UTF8 mode is always on.")
        else:
            s.refuse(504, "UTF8 cannot be turned off: paths are always UTF-8.")
        return None
    if name == "MLST":
        s.mlst_facts = listing.select_facts(rest)
        s.reply(200, "MLST OPTS " + "".join(f + ";" for f in s.mlst_facts))
        return None
    s.refuse(501, f"OPTS {name}: unknown option (known: UTF8, MLST).")
    return None



def stat(s: Session, arg: str) -> Result:
    if arg.strip():
        if s.user is None:
            s.refuse(530, "Please log in with USER and PASS before STAT.")
            return None
        if not s.perms.list:
            s.deny("list")
            return None
        opts_, target = listing.split_list_arg(arg)
        p = vpath(s, "STAT", target or ".")
        if p is None:
            return None
        return _stat_listing(s, target or ".", listing_of(s, p, long_line(), indent=True))
    mode = "passive" if s.pasv else ("active" if s.port_target else "none set")
    if s.xfer is not None:  # STAT during a transfer (RFC 959 §4.1.3): answered at once
        verb, what, progress = s.xfer
        mode = f"transfer in progress: {verb} {what}, {progress.bytes} bytes so far"
    s.send_reply(Reply(211, (
        "natftp status:",
        f"Connected from {s.client_ip}",
        f"Logged in as {s.login_name}" if s.user else "Not logged in",
        f"TYPE: {'BINARY' if s.binary else 'ASCII'}; STRUcture: File; transfer MODE: "
        "Stream",
        f"Data connection: {mode}",
        (f"Control connection: TLS ({s.tls_note}); data: PROT {'P' if s.prot_p else 'C'}"
         if s.tls is not None else
         "Control connection: in the clear" + (f" after CCC; data: PROT "
                                               f"{'P' if s.prot_p else 'C'}"
                                               if s.tls_ctx is not None else "")),
        "End of status.")))
    return None


def listing_of(s: Session, p: str, line: Callable[[listing.FileFacts], str], *,
               indent: bool = False, file_line: Callable[[listing.FileFacts], str] | None
               = None) -> Listing | ObjectListing:
    """The listing of ``p`` from the session's storage (disk or object storage)."""
    if isinstance(s.storage, S3Storage):
        return ObjectListing(s.storage, p, line, indent=indent, file_line=file_line)
    return Listing(s.store(), p, line, indent=indent, file_line=file_line)


def _chunks(s: Session, lst: Listing | ObjectListing) -> Callable[[], Awaitable[bytes]]:
    """How the next chunk of ``lst`` is read: a disk listing in a worker thread, an
    object-storage one as a coroutine (the service answers over the network)."""
    if isinstance(lst, ObjectListing):
        return lst.chunk
    pool = s.server.list_pool()
    return lambda: s.loop.run_in_executor(pool, lst.chunk)


async def _stat_listing(s: Session, target: str, lst: Listing | ObjectListing) -> None:
    """STAT PATH: a 213 reply on the control connection, written a chunk at a time as
    the client reads (``Session.drained``), the directory read off the loop."""
    more = _chunks(s, lst)
    try:
        try:
            chunk = await more()
        except StorageError as e:
            s.storage_error("STAT", e)
            return
        head = f"213-Status of {target}".replace("\r", " ").replace("\n", " ")
        s.write_reply(head.encode("utf-8", "surrogateescape") + b"\r\n" + chunk)
        while chunk:
            await s.drained()
            try:
                chunk = await more()
            except StorageError as e:  # the object store failed half-way
                s.reply(213, f"End of status; the listing broke off: {e}.")
                return
            if chunk:
                s.write_reply(chunk)
        s.reply(213, "End of status.")
        s.event("STAT %s: %d lines", lst.vpath, lst.lines)
    finally:
        if isinstance(lst, ObjectListing):
            await lst.aclose()


def host(s: Session, arg: str) -> Result:
    if s.user is not None:
        s.refuse(503, "HOST must come before USER (RFC 7151).")
        return None
    s.reply(220, f"Host {arg.strip()} accepted (one site is served on this address).")
    return None


# -- TLS (RFC 4217) --------------------------------------------------------------------

def auth(s: Session, arg: str) -> Result:
    mech = auth_mechanism(arg)
    if mech is None:
        s.refuse(504, f"AUTH {arg.strip()}: unsupported mechanism; use AUTH TLS.")
        return None
    if s.tls is not None:
        s.refuse(503, "TLS is already on for this control connection.")
        return None
    if s.tls_ctx is not None:
        s.refuse(503, "AUTH refused: TLS was cleared on this connection by CCC; "
                      "reconnect to start TLS again.")
        return None
    if s.user is not None:
        s.refuse(503, f"AUTH refused: already logged in as {s.login_name}; send AUTH TLS "
                      "before USER.")
        return None
    s.reply(234, f"AUTH {mech.name} ok; proceed with TLS negotiation.")
    s.pending_user = None
    s.start_tls()
    s.prot_p = mech.prot_p  # AUTH SSL / TLS-P (pre-RFC 4217) also protect data
    return None


def _need_tls(s: Session, verb: str) -> bool:
    if s.tls_ctx is None:
        s.refuse(503, f"{verb} needs AUTH TLS first (RFC 4217).")
        return False
    return True


def pbsz(s: Session, arg: str) -> Result:
    if not _need_tls(s, "PBSZ"):
        return None
    a = arg.strip()
    if not a.isdigit():
        s.refuse(501, f"PBSZ needs a number (0 for TLS), got {a!r}.")
        return None
    s.pbsz = True
    s.reply(200, "PBSZ=0")
    return None


def prot(s: Session, arg: str) -> Result:
    if not _need_tls(s, "PROT"):
        return None
    level = arg.strip().upper()
    if level == "P":
        s.prot_p = True
        s.reply(200, "PROT P ok: data connections are TLS.")
    elif level == "C":
        need = tls_required(s) if s.user is not None else s.server.config.tls.required
        if need == "data":
            s.server.stats.refused("tls_required")
            s.refuse(534, "PROT C refused: data connections must be encrypted here "
                          "(tls.required = \"data\"); use PROT P.")
            return None
        s.prot_p = False
        s.reply(200, "PROT C ok: data connections are in the clear.")
    elif level in ("S", "E"):
        s.refuse(536, f"PROT {level} is not supported with TLS; use P or C.")
    else:
        s.refuse(504, f"PROT {arg.strip()}: unknown level; use P (private) or C (clear).")
    return None


def ccc(s: Session, arg: str) -> Result:
    if s.tls is None:
        s.refuse(533, "CCC refused: the control connection is not protected.")
        return None
    s.reply(200, "CCC ok: the control connection continues in the clear (data connections "
                 f"stay PROT {'P' if s.prot_p else 'C'}).")
    s.event("CCC: clearing TLS on the control connection (tls.ccc = true)")
    s.clear_tls()
    return None


# -- directories ---------------------------------------------------------------------

def pwd(s: Session, arg: str) -> Result:
    s.reply(257, f"{paths.quote_257(s.cwd)} is the current directory.")
    return None


def cwd(s: Session, arg: str) -> Result:
    if paths.only_up(arg):
        # `..` at the top stays at the top, as vsftpd, ProFTPD and pyftpdlib answer:
        # clients walk up with CDUP until the root and take a 550 for an error
        p = paths.resolve_up(s.cwd, arg)
    else:
        q = vpath(s, "CWD", arg)
        if q is None:
            return None
        p = q
    try:
        mode = s.store().stat(p).st_mode
    except StorageError as e:
        s.storage_error("CWD", e)
        return None
    if not stat_.S_ISDIR(mode):
        s.refuse(550, f"CWD refused: {p} is not a directory.")
        return None
    s.cwd = p
    s.reply(250, f"Directory changed to {p}.")
    return None


def cdup(s: Session, arg: str) -> Result:
    return cwd(s, "..")


def _path_op(s: Session, verb: str, arg: str, op: Callable[[Any, str], object]) -> str | None:
    """Resolve ``arg`` and run a storage operation on it; the path on success, else None
    (the refusal has already been sent and logged)."""
    p = vpath(s, verb, arg)
    if p is None:
        return None
    try:
        op(s.store(), p)
    except StorageError as e:
        s.storage_error(verb, e)
        return None
    return p


def mkd(s: Session, arg: str) -> Result:
    p = _path_op(s, "MKD", arg, lambda st, path: st.mkdir(path))
    if p is not None:
        s.event("created directory %s", p)
        s.reply(257, f"{paths.quote_257(p)} created.")
    return None


def rmd(s: Session, arg: str) -> Result:
    p = _path_op(s, "RMD", arg, lambda st, path: st.rmdir(path))
    if p is not None:
        s.event("removed directory %s", p)
        s.reply(250, f"Directory {p} removed.")
    return None


def dele(s: Session, arg: str) -> Result:
    p = _path_op(s, "DELE", arg, lambda st, path: st.remove(path))
    if p is not None:
        s.event("deleted %s", p)
        s.reply(250, f"File {p} deleted.")
    return None


def rnfr(s: Session, arg: str) -> Result:
    p = _path_op(s, "RNFR", arg, lambda st, path: st.exists(path))
    if p is None:
        return None
    s.rnfr = p
    s.reply(350, f"{p} exists; send RNTO with the new name.")
    return None


def rnto(s: Session, arg: str) -> Result:
    src, s.rnfr = s.rnfr, None
    if src is None:
        s.refuse(503, "RNTO must follow RNFR.")
        return None
    p = vpath(s, "RNTO", arg)
    if p is None:
        return None
    try:
        s.store().rename(src, p)
    except StorageError as e:
        s.storage_error("RNTO", e)
        return None
    s.event("renamed %s to %s", src, p)
    s.reply(250, f"Renamed {src} to {p}.")
    return None


def size(s: Session, arg: str) -> Result:
    p = vpath(s, "SIZE", arg)
    if p is None:
        return None
    if s.perms.write and s.binary:
        # an interrupted upload of this name: its size is where a resume starts (curl -C -,
        # lftp put -c, ftplib rest=, natftp put -c send SIZE, then REST+STOR or APPE; in
        # TYPE I: a restart in TYPE A is refused, its offsets are not the file's)
        kept = s.store().partial_size(p)
        if kept is not None:
            s.reply(213, str(kept))
            return None
    try:
        st = s.store().stat(p)
    except StorageError as e:
        s.storage_error("SIZE", e)
        return None
    if not listing.FileFacts.from_stat(p, st).is_file:
        s.refuse(550, f"SIZE refused: {p} is not a regular file.")
        return None
    if s.binary:
        s.reply(213, str(st.st_size))
        return None
    # RFC 3659 §4: the size in the current TYPE, exactly; in TYPE A that means counting
    # the line ends, i.e. reading the file (550 is allowed when that is too costly)
    if not ascii_size_ok(s, p, st.st_size):
        return None
    return _ascii_size(s, p)


def ascii_size_ok(s: Session, p: str, size: int) -> bool:
    """SIZE in TYPE A reads the whole file to count its line ends: up to ASCII_SIZE_MAX
    (refused with the reason beyond)."""
    if size > ASCII_SIZE_MAX:
        s.refuse(550, f"SIZE refused in TYPE A: {p} is {size} bytes stored, and its "
                      "size in TYPE A (every line end as CR LF) means reading all of it; "
                      f"natftp counts files up to {ASCII_SIZE_MAX >> 20} MiB. Send TYPE I "
                      "first for the size in bytes.")
        return False
    return True


async def _ascii_size(s: Session, p: str) -> None:
    """SIZE in TYPE A, as the busy task: the file is read in chunks, yielding between
    them, so a large one does not hold up other sessions."""
    try:
        fd, _ = s.store().open_read(p)
    except StorageError as e:
        s.storage_error("SIZE", e)
        return
    enc = ToWire()
    n = offset = 0
    try:
        while chunk := os.pread(fd, data.ASCII_CHUNK, offset):
            offset += len(chunk)
            n += enc.count(chunk)
            await asyncio.sleep(0)
    finally:
        os.close(fd)
    s.reply(213, str(n))


def mdtm(s: Session, arg: str) -> Result:
    p = vpath(s, "MDTM", arg)
    if p is None:
        return None
    try:
        st = s.store().stat(p)
    except StorageError as e:
        s.storage_error("MDTM", e)
        return None
    if not listing.FileFacts.from_stat(p, st).is_file:
        s.refuse(550, f"MDTM refused: {p} is not a regular file (MDTM is for files, RFC "
                      "3659 §3; MLST gives a directory's modify fact).")
        return None
    s.reply(213, listing.mlst_time(st.st_mtime).split(".")[0])
    return None


def mfmt(s: Session, arg: str) -> Result:
    when, _, name = arg.strip().partition(" ")
    try:
        mtime = listing.parse_mlst_time(when)
    except ValueError as e:
        s.refuse(501, f"MFMT needs YYYYMMDDHHMMSS and a path: {e}.")
        return None
    if not name:
        s.refuse(501, "MFMT needs YYYYMMDDHHMMSS and a path.")
        return None
    p = vpath(s, "MFMT", name)
    if p is None:
        return None
    try:
        s.store().set_mtime(p, mtime)
    except StorageError as e:
        s.storage_error("MFMT", e)
        return None
    s.reply(213, f"Modify={when}; {p}")
    return None


# -- transfer parameters ----------------------------------------------------------------

def type_(s: Session, arg: str) -> Result:
    t = arg.strip().upper().split()
    if t and t[0] == "I" or t == ["L", "8"]:
        s.binary = True
        s.reply(200, "Type set to I (binary).")
    elif t and t[0] == "A" and (len(t) == 1 or t[1] == "N"):
        s.binary = False
        s.reply(200, "Type set to A (ASCII; line ends converted).")
    else:
        s.refuse(504, f"TYPE {arg.strip()}: only A (ASCII) and I (binary) are supported.")
    return None


def mode(s: Session, arg: str) -> Result:
    if arg.strip().upper() == "S":
        s.reply(200, "Mode set to S (stream).")
    else:
        s.refuse(504, f"MODE {arg.strip()}: only S (stream) is supported.")
    return None


def stru(s: Session, arg: str) -> Result:
    if arg.strip().upper() == "F":
        s.reply(200, "Structure set to F (file).")
    else:
        s.refuse(504, f"STRU {arg.strip()}: only F (file) is supported.")
    return None


def allo(s: Session, arg: str) -> Result:
    s.reply(202, "ALLO not needed: space is allocated as data arrives.")
    return None


def rest(s: Session, arg: str) -> Result:
    a = arg.strip()
    # isascii: str.isdigit() also accepts "²" and other digits int() refuses; 18 digits
    # keep the offset a valid file offset (off_t)
    if not (a.isascii() and a.isdigit()) or len(a) > 18:
        s.refuse(501, f"REST needs a byte offset (a non-negative integer below 10**18), "
                      f"got {a!r}.")
        return None
    s.rest = int(a)
    s.reply(350, f"Restarting at {s.rest}; send RETR, STOR or APPE." + (
        "" if s.binary else " In TYPE A the offset counts octets as sent (line ends as "
        "CR LF), RFC 3659 §5.3."))
    return None


# -- data connection setup ------------------------------------------------------------

def _open_passive(s: Session, verb: str) -> int | None:
    old = s.pasv
    # a new PASV does not renew a port that is still waiting: the new one keeps its
    # deadline (a client cannot hold a port for ever by repeating PASV)
    deadline = old.deadline if old is not None and old.waiting else None
    s.close_data()
    srv = s.server
    cap = srv.config.limits.max_passive_per_ip
    if cap and srv.waiting_per_ip[s.client_ip] >= cap:
        srv.stats.refused("passive_per_ip")
        s.refuse(425, f"{verb}: {s.client_ip} already has {cap} passive ports waiting for a "
                      "data connection (limits.max_passive_per_ip); connect to them, or "
                      "wait until they time out (timeouts.data).", level=logging.WARNING,
                 kind="passive-cap")
        return None
    pool = srv.pool
    try:
        bound = s.take_spare()
        if bound is not None:
            data.drain_backlog(bound[0], bound[1], s.sid)
        else:
            bound = ports.bind_passive(pool, s.family, s.local)
            while bound is None and (srv.reclaim_spare() or srv.reclaim_waiting()):
                bound = ports.bind_passive(pool, s.family, s.local)
    except OSError as e:
        s.refuse(425, f"{verb}: cannot open a passive port ({e.strerror or e}).",
                 level=logging.ERROR)
        return None
    if bound is None:
        s.server.stats.refused("passive_ports_full")
        s.refuse(425, f"{verb}: no free passive port: all {pool.size} ports of "
                      f"{pool.describe()} (passive.ports) are in use; try again later, or "
                      "widen passive.ports.", level=logging.WARNING, kind="passive-full")
        return None
    sock, port = bound
    s.pasv = data.PassiveListener(s.loop, sock, port, pool, s.client_ip,
                                  srv.config.timeouts.data, s.sid,
                                  s.tls_ctx if s.prot_p else None, family=s.family,
                                  peer_text=s.peer_text, relay=srv.relay,
                                  deadline=deadline, stats=srv.stats)
    srv.passive_waiting(s.pasv, s.client_ip)
    return port


def pasv(s: Session, arg: str) -> Result:
    if s.epsv_all:
        s.refuse(503, "PASV refused after EPSV ALL (RFC 2428); use EPSV.")
        return None
    if s.client_ip.version != 4:
        s.refuse(425, f"PASV carries only IPv4 addresses and this control connection is "
                      f"IPv6 ({s.client_ip}); use EPSV.")
        return None
    try:
        decision = s.server.policy.advertise(s.server_ip, s.client_ip)
    except NoUsableAddress as e:
        s.refuse(425, f"PASV: no address to advertise ({e}); set nat.masquerade.",
                 level=logging.ERROR)
        return None
    if decision.warn_unreachable:
        s.server.warn_unreachable(s.client_ip, decision.address,
                                  None if decision.rule is Rule.FALLBACK else decision.reason)
    port = _open_passive(s, "PASV")
    if port is None:
        return None
    adv = s.server.pool.advertise(port)
    log.debug("[%s] PASV %s:%d (listening on %d): %s", s.sid, decision.address, adv, port,
              decision.reason)
    s.reply(227, addr.format_227(decision.address, adv))
    return None


def epsv(s: Session, arg: str) -> Result:
    a = arg.strip().upper()
    if a == "ALL":
        s.epsv_all = True
        s.reply(200, "EPSV ALL accepted: only EPSV will set up data connections.")
        return None
    want = {4: "1", 6: "2"}[s.client_ip.version]
    if a and a != want:
        if a in ("1", "2"):
            s.refuse(522, f"Network protocol {a} not supported on this connection, use "
                          f"({want}).")
        else:
            s.refuse(501, f"EPSV {a}: expected 1, 2 or ALL.")
        return None
    port = _open_passive(s, "EPSV")
    if port is None:
        return None
    s.reply(229, addr.format_229(s.server.pool.advertise(port)))
    return None


def _active_target(s: Session, verb: str, host: addr.IPAddress, port: int) -> Result:
    if s.epsv_all:
        s.refuse(503, f"{verb} refused after EPSV ALL (RFC 2428); use EPSV.")
        return None
    cfg = s.server.config.active
    try:
        target = addr.active_target(host, port, s.client_ip,
                                    allow_foreign=cfg.allow_foreign_address,
                                    allow_low_ports=cfg.allow_low_ports)
    except addr.ActiveTargetRefused as e:
        if e.kind in ("foreign", "low-port"):
            s.server.stats.refused("bounce")
        setting = {"foreign": "active.allow_foreign_address = false",
                   "low-port": "active.allow_low_ports = false"}.get(e.kind, "")
        s.refuse(e.code, e.reply_text(verb, setting),
                 level=logging.INFO if e.kind == "family" else logging.WARNING)
        return None
    s.close_data()
    host_s = str(target)
    if s.family == socket.AF_INET6 and target.version == 4:
        host_s = f"::ffff:{target}"
    s.port_target = (host_s, port)
    s.reply(200, f"{verb} command successful; will connect to {target} port {port}.")
    return None


def port(s: Session, arg: str) -> Result:
    try:
        host_, p = addr.parse_port_arg(arg)
    except addr.AddressError as e:
        s.refuse(501, f"PORT: {e}.")
        return None
    return _active_target(s, "PORT", host_, p)


def eprt(s: Session, arg: str) -> Result:
    try:
        host_, p = addr.parse_eprt_arg(arg)
    except addr.AddressError as e:
        msg = str(e)
        if "unsupported" in msg:
            want = "1" if s.client_ip.version == 4 else "2"
            s.refuse(522, f"EPRT: {msg}; network protocol not supported, use ({want}).")
        else:
            s.refuse(501, f"EPRT: {msg}.")
        return None
    return _active_target(s, "EPRT", host_, p)


def abor(s: Session, arg: str) -> Result:
    # reached only when no transfer runs (a running one is aborted by the session)
    had = s.has_data_setup()
    s.close_data()
    s.reply(225, "No transfer to abort" + ("; data connection closed." if had else "."))
    return None


# -- transfers ----------------------------------------------------------------------------

def _take_rest(s: Session) -> int:
    r, s.rest = s.rest, 0
    return r


def _need_data(s: Session, verb: str) -> bool:
    if not s.prot_p and tls_required(s) == "data":
        s.server.stats.refused("tls_required")
        s.refuse(521, f"{verb} refused: data connections must be encrypted (tls.required = "
                      "\"data\"); send PBSZ 0 and PROT P first.")
        return False
    if not s.has_data_setup():
        s.refuse(425, f"{verb}: no data connection set up; send PASV, EPSV, PORT or EPRT "
                      "first.")
        return False
    return True


def retr(s: Session, arg: str) -> Result:
    offset = _take_rest(s)
    p = vpath(s, "RETR", arg)
    if p is None or not _need_data(s, "RETR"):
        return None
    try:
        fd, fsize = s.store().open_read(p)
    except StorageError as e:
        s.storage_error("RETR", e)
        return None
    # in TYPE A the wire form is at most twice the file (every byte an LF); an offset
    # inside that is checked as the transfer reaches it
    if offset > (fsize if s.binary else 2 * fsize):
        os.close(fd)
        s.refuse(554, f"RETR refused: restart offset {offset} is beyond the end of {p} "
                      f"({fsize} bytes" + ("" if s.binary else
                                           " on disk, at most twice that in TYPE A") + ").")
        return None
    if s.binary:
        mark = f"Opening BINARY mode data connection for {p} ({fsize - offset} bytes)."
        listener = s.pasv
        if listener is not None and not s.prot_p:
            conn = listener.take_now()
            if conn is not None:
                s.pasv = None
                s.retire(listener)
                return s.send_now(conn, fd, offset, fsize, p, mark)

        async def body(chan: data.Channel, prog: data.Progress) -> int:
            return await chan.send_file(fd, offset, prog, fsize)
    else:
        async def body(chan: data.Channel, prog: data.Progress) -> int:
            return await data.send_ascii(chan, fd, offset, prog, p)
        # no "(N bytes)": clients read that as the size of what follows, and in TYPE A
        # it is not the size on disk
        mark = (f"Opening ASCII mode data connection for {p} (line ends sent as CR LF"
                + (f", from octet {offset}" if offset else "") + ").")
    return s.transfer("RETR", p, mark, body, fd=fd, hold_mark=s.binary)


def _store(s: Session, verb: str, arg: str, *, append: bool = False,
           unique: bool = False) -> Result:
    offset = _take_rest(s)
    if unique:
        try:
            stem = paths.basename(paths.resolve("/", paths.basename(arg.strip())))
            p = s.store().unique_name(s.cwd, stem or "file")
        except (StorageError, PathError) as e:
            s.refuse(e.code, f"STOU refused: {e}.")
            return None
    else:
        q = vpath(s, verb, arg)
        if q is None:
            return None
        p = q
    if not restart_ok(s, verb, offset) or not _need_data(s, verb):
        return None
    try:
        up = s.store().open_write(p, offset=offset, append=append, unique=unique)
    except StorageError as e:
        s.storage_error(verb, e)
        return None
    fd = up.fd
    if s.binary:
        async def body(chan: data.Channel, prog: data.Progress) -> int:
            return await data.recv_to_file(chan, fd, prog)
    else:
        async def body(chan: data.Channel, prog: data.Progress) -> int:
            return await data.recv_ascii_to_file(chan, fd, prog)
    mark = (f"FILE: {paths.basename(p)}" if unique else
            f"Opening {'BINARY' if s.binary else 'ASCII'} mode data connection for {p}"
            + (f" at offset {offset}" if offset else "") + ".")
    return s.transfer(verb, p, mark, body, upload=up)


def restart_ok(s: Session, verb: str, offset: int) -> bool:
    """REST before an upload is for TYPE I only (refused with the reason otherwise)."""
    if offset and not s.binary:
        s.refuse(554, f"{verb} refused: REST {offset} in TYPE A cannot be resumed: the file "
                      "stored does not keep the octets that were sent (CR LF became LF), "
                      "so the offset cannot be found in it; resume in TYPE I, or send the "
                      "whole file again.")
        return False
    return True


def stor(s: Session, arg: str) -> Result:
    return _store(s, "STOR", arg)


def appe(s: Session, arg: str) -> Result:
    if s.rest:
        s.rest = 0  # REST+APPE: the offset is where the file ends anyway
    return _store(s, "APPE", arg, append=True)


def stou(s: Session, arg: str) -> Result:
    return _store(s, "STOU", arg, unique=True)


def _stream(s: Session, verb: str, what: str, lst: Listing | ObjectListing) -> Result:
    """A listing over the data connection, read in a worker thread one chunk at a time
    and sent at the client's pace (see :mod:`natftp.server.listings`). It is the
    session's transfer from now (``xfer``): an ABOR or STAT while the directory is
    read acts on it, as on any transfer that has not started yet."""
    s.xfer = (verb, what, data.Progress())
    return _streamed(s, verb, what, lst)


async def _streamed(s: Session, verb: str, what: str, lst: Listing | ObjectListing,
                    ) -> None:
    more = _chunks(s, lst)
    try:
        try:
            first = await more()
        except StorageError as e:
            s.xfer = None
            s.storage_error(verb, e)
            return
        if not _need_data(s, verb):
            s.xfer = None
            return

        async def body(chan: data.Channel, prog: data.Progress) -> int:
            sent = 0
            chunk = first
            while chunk:
                await chan.send(chunk)
                sent += len(chunk)
                prog.bytes += len(chunk)
                try:
                    chunk = await more()
                except StorageError as e:  # the object store failed half-way
                    raise OSError(errno.EIO, str(e)) from None
            return sent

        await s.transfer(verb, what, f"Here comes the listing of {what}.", body)
    finally:
        if isinstance(lst, ObjectListing):
            await lst.aclose()


def _listing(s: Session, verb: str, arg: str, *, long: bool) -> Result:
    _opts, target = listing.split_list_arg(arg)
    target = target or "."
    p = vpath(s, verb, target)
    if p is None:
        return None
    if long:
        lst = listing_of(s, p, long_line())
    else:
        lst = listing_of(s, p, name_line(target), file_line=lambda f: target)
    return _stream(s, verb, p, lst)


def list_(s: Session, arg: str) -> Result:
    return _listing(s, "LIST", arg, long=True)


def nlst(s: Session, arg: str) -> Result:
    return _listing(s, "NLST", arg, long=False)


def _perm_fact(s: Session, f: listing.FileFacts) -> str:
    p = s.perms
    return listing.mlst_perm(f, read=p.read, write=p.write, delete=p.delete,
                             rename=p.rename, mkdir=p.mkdir, list_=p.list)


def mlsd(s: Session, arg: str) -> Result:
    p = vpath(s, "MLSD", arg.strip() or ".")
    if p is None:
        return None
    st = s.store()
    if not st.is_dir(p):
        try:
            st.stat(p)
        except StorageError as e:
            s.storage_error("MLSD", e)
            return None
        s.refuse(501, f"MLSD refused: {p} is not a directory (use MLST for a file).")
        return None
    facts = s.mlst_facts
    return _stream(s, "MLSD", p, Listing(
        st, p, lambda f: listing.mlst_line(f, _perm_fact(s, f), facts)))


def mlst(s: Session, arg: str) -> Result:
    p = vpath(s, "MLST", arg.strip() or ".")
    if p is None:
        return None
    try:
        f = s.store().facts(p)
    except StorageError as e:
        s.storage_error("MLST", e)
        return None
    line = listing.mlst_line(f, _perm_fact(s, f), s.mlst_facts, name=p)
    s.send_reply(Reply(250, (f"Listing {p}", line, "End.")))
    return None


# -- SITE (its table and dispatch: natftp.server.commands) --------------------------------

def site_chmod(s: Session, arg: str) -> Result:
    mode_s, _, name = arg.lstrip(" ").partition(" ")
    if not name.strip():
        s.refuse(501, "SITE CHMOD needs an octal mode and a path, e.g. SITE CHMOD 644 "
                      "notes.txt.")
        return None
    if not (1 <= len(mode_s) <= 4 and all(c in "01234567" for c in mode_s)):
        shown = mode_s[:20].encode("ascii", "backslashreplace").decode()
        s.refuse(501, f"SITE CHMOD: {shown!r} is not an octal mode; give up to 4 octal "
                      "digits, e.g. 644 or 0755.")
        return None
    mode = int(mode_s, 8)
    if mode & ~0o777:
        s.refuse(550, f"SITE CHMOD {mode_s} refused: only the permission bits (000-777) can "
                      "be set here; setuid, setgid and sticky bits cannot.")
        return None
    if isinstance(s.storage, S3Storage):
        q = vpath(s, "SITE CHMOD", name)
        if q is not None:
            s.refuse(550, f"SITE CHMOD refused: {q}: object storage keeps no permission "
                          "bits (what a user may do is set by natftp's permissions and the "
                          "server's S3 key).")
        return None
    p = _path_op(s, "SITE CHMOD", name, lambda st, path: st.chmod(path, mode))
    if p is not None:
        s.event("SITE CHMOD %03o %s", mode, p)
        s.reply(200, f"SITE CHMOD {mode:03o} {p}: permissions changed.")
    return None
