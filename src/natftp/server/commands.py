"""The command table: one row per command, and everything derived from it.

Each row says whether the command needs a login, what argument it needs (None: none
required), which permission it checks, which server capability it needs (``tls``,
``ccc``), its help text, its handler, the specification it follows and the choices natftp
makes where that allows several. The session checks the preconditions from the row;
FEAT, HELP, the 500/502 replies and the generated part of ``docs/conformance.md`` come
from this table, never from a second list: a row whose capability is off is left out of
FEAT and HELP and answered with 502 and the setting that turns it on. SITE subcommands
have a table of their own, with the same kind of rows and the same preconditions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from natftp.proto.listing import mlst_feat
from natftp.proto.replies import Reply, feat_reply
from natftp.server import handlers as h
from natftp.server.handlers import Result

if TYPE_CHECKING:
    from natftp.server.session import Session


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    handler: Callable[[Session, str], Result]
    help: str
    login: bool = True
    #: what the required argument is (for the 501 reply), or None when optional/none
    arg: str | None = None
    #: the Permissions field checked before the handler runs
    perm: str | None = None
    syntax: str = ""
    #: the line this command adds to FEAT, if any
    feat: str | None = None
    #: the server capability this command needs (a key of OFF_REASON), None: always on
    needs: str | None = None
    #: the specification this command follows (docs/conformance.md)
    rfc: str = ""
    #: what natftp does where the specification leaves a choice (docs/conformance.md)
    note: str = ""


# -- the commands that answer from the table: FEAT, HELP, SITE and SITE HELP -------

def feat(s: Session, arg: str) -> Result:
    s.send_reply(feat_reply(features(s.mlst_facts, s.server.caps)))
    return None


def help_(s: Session, arg: str) -> Result:
    if arg.strip():
        spec = TABLE.get(arg.strip().upper())
        if spec is None:
            s.refuse(501, f"HELP: unknown command {arg.strip()!r}.")
        else:
            s.reply(214, f"Syntax: {spec.name} {spec.syntax}".rstrip() + f" -- {spec.help}")
        return None
    names = sorted(n for n, row in TABLE.items() if row.needs is None or
                   row.needs in s.server.caps)
    rows = [" ".join(f"{n:<5}" for n in names[i:i + 10]) for i in range(0, len(names), 10)]
    s.send_reply(Reply(214, ("The following commands are recognized:", *rows,
                             "HELP command gives details.")))
    return None


def site(s: Session, arg: str) -> Result:
    sub, _, rest = arg.lstrip(" ").partition(" ")
    name = sub.upper()
    spec = SITE_TABLE.get(name)
    if spec is None:
        why = SITE_NOT_IMPLEMENTED.get(name)
        if why is not None:
            s.refuse(502, f"SITE {name} is not implemented by this server ({why}); SITE "
                          "HELP lists the SITE commands.")
        else:
            shown = sub[:20].encode("ascii", "backslashreplace").decode()
            s.refuse(500, f"SITE {shown!r}: unknown SITE command; SITE HELP lists them.")
        return None
    s.dispatch(spec, f"SITE {name}", rest)
    return None


def site_help(s: Session, arg: str) -> Result:
    def line(spec: CommandSpec) -> str:
        text = f"SITE {spec.name} {spec.syntax}".rstrip() + f" -- {spec.help}"
        if spec.perm is not None and not getattr(s.perms, spec.perm):
            why = s.perm_source.get(spec.perm, f"permissions.{spec.perm} = false")
            text += f" (not for this login: {why})" if s.user else " (after login)"
        return text

    want = arg.strip().upper()
    if want:
        spec = SITE_TABLE.get(want)
        if spec is None:
            s.refuse(501, f"SITE HELP: unknown SITE command {arg.strip()!r}.")
        else:
            s.reply(214, line(spec))
        return None
    s.send_reply(Reply(214, ("The following SITE commands are recognized:",
                             *(line(spec) for spec in SITE_TABLE.values()),
                             "End of SITE HELP.")))
    return None


#: why a capability is off, for the 502 reply (and what turns it on)
OFF_REASON = {
    "tls": "TLS is off on this server (tls.enabled = false; turn on with --tls or "
           "--tls-cert)",
    "ccc": "clearing the control channel is off (tls.ccc = false; turn on with --tls-ccc)",
}

_ASCII_NOTE = ("TYPE A: the file's LF line ends are sent as CR LF, an LF that already "
               "follows a CR is sent as it is (a CR LF file is not doubled), a lone CR "
               "goes as it is.")


_ROWS = [
    CommandSpec("USER", h.user, "Send the user name.", login=False, arg="a user name",
                syntax="<name>", rfc="RFC 959 §4.1.1",
                note="Also while logged in: that login ends and a new one starts "
                     "(transfer parameters stay; after a transfer in progress). With "
                     "tls.required, 530 before AUTH TLS."),
    CommandSpec("PASS", h.pass_, "Send the password.", login=False, syntax="<password>",
                rfc="RFC 959 §4.1.1",
                note="A failed login waits timeouts.login_failure_delay; after "
                     "limits.max_login_attempts, 421 and close. Never logged."),
    CommandSpec("REIN", h.rein, "Reinitialize: log out and reset the transfer parameters.",
                login=False, rfc="RFC 959 §4.1.1",
                note="Answered after a transfer in progress completes (220). Resets the "
                     "login, TYPE, REST, RNFR, the data connection set-up, EPSV ALL and "
                     "MLST facts. TLS on the control connection and PROT stay as they "
                     "are (clearing them would put the next password in the clear)."),
    CommandSpec("QUIT", h.quit_, "Close the connection.", login=False, rfc="RFC 959 §4.1.1",
                note="Answered (221) after a transfer in progress completes."),
    CommandSpec("NOOP", h.noop, "Do nothing (keep the connection alive).", login=False,
                rfc="RFC 959 §4.1.3"),
    CommandSpec("SYST", h.syst, "Name the system type.", login=False, rfc="RFC 959 §4.1.3",
                note="`215 UNIX Type: L8`, also before login."),
    CommandSpec("FEAT", feat, "List the extensions supported.", login=False,
                rfc="RFC 2389 §3", note="Generated from this table (and TLS when on)."),
    CommandSpec("OPTS", h.opts, "Set an option (UTF8 ON, MLST facts).", login=False,
                arg="an option, e.g. UTF8 ON", syntax="<option> <value>", feat="UTF8",
                rfc="RFC 2389 §4; RFC 3659 §7",
                note="UTF8 is always on (OPTS UTF8 OFF: 504). OPTS MLST selects facts."),
    CommandSpec("HELP", help_, "List the commands, or describe one.", login=False,
                syntax="[<command>]", rfc="RFC 959 §4.1.3",
                note="Generated from this table."),
    CommandSpec("STAT", h.stat, "Server status, or a listing of a path on the control "
                "connection.", login=False, syntax="[<path>]", rfc="RFC 959 §4.1.3",
                note="Without an argument during a transfer: answered at once (211), "
                     "with the bytes moved so far. With a path: an `ls -l` listing "
                     "(213), after a transfer in progress."),
    CommandSpec("HOST", h.host, "Name the virtual host (RFC 7151).", login=False,
                arg="a host name", syntax="<hostname>", feat="HOST", rfc="RFC 7151 §3",
                note="Accepted before USER (one site is served); after login 503."),
    CommandSpec("AUTH", h.auth, "Start TLS on the control connection (RFC 4217).",
                login=False, arg="TLS", syntax="TLS", feat="AUTH TLS", needs="tls",
                rfc="RFC 2228 §3; RFC 4217",
                note="TLS, TLS-C, SSL, TLS-P (the last two also mean PROT P)."),
    CommandSpec("PBSZ", h.pbsz, "Protection buffer size (0 with TLS).", login=False,
                arg="0", syntax="0", feat="PBSZ", needs="tls", rfc="RFC 2228 §3; RFC 4217"),
    CommandSpec("PROT", h.prot, "Data protection: P (TLS) or C (clear).", login=False,
                arg="P or C", syntax="P | C", feat="PROT", needs="tls",
                rfc="RFC 2228 §3; RFC 4217",
                note="C and P; S and E: 536. C refused (534) with tls.required = data."),
    CommandSpec("CCC", h.ccc, "Clear the command channel: end TLS on the control "
                "connection after login (data stays as PROT says).", feat="CCC",
                needs="ccc", rfc="RFC 2228 §3; RFC 4217"),
    CommandSpec("CWD", h.cwd, "Change the working directory.", arg="a directory",
                syntax="<path>", rfc="RFC 959 §4.1.1",
                note="Steps up only (`..`, `../..`, `/..`) stop at / (250), as POSIX "
                     "`/..` is `/`. A path that names something above the home "
                     "(`../etc`), or a symlink leading out of it, is refused (550, "
                     "logged)."),
    CommandSpec("XCWD", h.cwd, "Change the working directory (RFC 775).",
                arg="a directory", syntax="<path>", rfc="RFC 775", note="As CWD."),
    CommandSpec("CDUP", h.cdup, "Go to the parent directory.", rfc="RFC 959 §4.1.1",
                note="At / it answers 250 and stays there (vsftpd, ProFTPD, pyftpdlib "
                     "do the same)."),
    CommandSpec("XCUP", h.cdup, "Go to the parent directory (RFC 775).", rfc="RFC 775",
                note="As CDUP."),
    CommandSpec("PWD", h.pwd, "Print the working directory.", rfc="RFC 959 §4.1.3",
                note="257 with the path quoted, an embedded quote doubled."),
    CommandSpec("XPWD", h.pwd, "Print the working directory (RFC 775).", rfc="RFC 775"),
    CommandSpec("MKD", h.mkd, "Create a directory.", arg="a directory name",
                perm="mkdir", syntax="<path>", rfc="RFC 959 §4.1.3"),
    CommandSpec("XMKD", h.mkd, "Create a directory (RFC 775).", arg="a directory name",
                perm="mkdir", syntax="<path>", rfc="RFC 775"),
    CommandSpec("RMD", h.rmd, "Remove an empty directory.", arg="a directory name",
                perm="delete", syntax="<path>", rfc="RFC 959 §4.1.3",
                note="Empty directories only; the home itself cannot be removed."),
    CommandSpec("XRMD", h.rmd, "Remove an empty directory (RFC 775).",
                arg="a directory name", perm="delete", syntax="<path>", rfc="RFC 775"),
    CommandSpec("DELE", h.dele, "Delete a file.", arg="a file name", perm="delete",
                syntax="<path>", rfc="RFC 959 §4.1.3",
                note="A directory is refused (use RMD)."),
    CommandSpec("RNFR", h.rnfr, "Name the file to rename.", arg="a path", perm="rename",
                syntax="<path>", rfc="RFC 959 §4.1.3",
                note="Any command but RNTO (or RNFR) in between forgets it."),
    CommandSpec("RNTO", h.rnto, "Rename the file named by RNFR.", arg="the new path",
                perm="rename", syntax="<path>", rfc="RFC 959 §4.1.3",
                note="A symlink is renamed, never its target."),
    CommandSpec("SIZE", h.size, "Size of a file in bytes.", arg="a file name",
                perm="list", syntax="<path>", feat="SIZE", rfc="RFC 3659 §4",
                note="Regular files only. TYPE I: bytes on disk. TYPE A: the exact "
                     "number of octets a RETR sends (line ends as CR LF), counted by "
                     "reading the file, for files up to 64 MiB; larger ones 550 "
                     "(allowed when counting is too costly)."),
    CommandSpec("MDTM", h.mdtm, "Modification time of a file.", arg="a file name",
                perm="list", syntax="<path>", feat="MDTM", rfc="RFC 3659 §3",
                note="Files only: a directory gets 550. UTC, whole seconds."),
    CommandSpec("MFMT", h.mfmt, "Set the modification time of a file.",
                arg="YYYYMMDDHHMMSS and a path", perm="write",
                syntax="<YYYYMMDDHHMMSS> <path>", feat="MFMT",
                rfc="draft-somers-ftp-mfxx", note="213 Modify=...; as the draft says."),
    CommandSpec("TYPE", h.type_, "Set the transfer type: A (ASCII) or I (binary).",
                arg="A or I", syntax="A | I", rfc="RFC 959 §4.1.2, §3.1.1",
                note="A (A N) and I (L 8); TYPE A E, A T, A C, E and L with another "
                     "byte size: 504. The default is A, as RFC 959 says."),
    CommandSpec("MODE", h.mode, "Set the transfer mode (S only).", arg="S", syntax="S",
                rfc="RFC 959 §4.1.2", note="S only; B and C: 504."),
    CommandSpec("STRU", h.stru, "Set the file structure (F only).", arg="F", syntax="F",
                rfc="RFC 959 §4.1.2", note="F only; R and P: 504."),
    CommandSpec("ALLO", h.allo, "Reserve space (not needed here).", rfc="RFC 959 §4.1.3",
                note="202: space is allocated as data arrives."),
    CommandSpec("REST", h.rest, "Restart the next RETR, STOR or APPE at an offset.",
                arg="a byte offset", syntax="<offset>", feat="REST STREAM",
                rfc="RFC 3659 §5",
                note="STREAM mode. The offset counts transfer octets: in TYPE A a RETR "
                     "restarts at that octet of the CR LF form (exact); REST + STOR in "
                     "TYPE A is refused (554): the file on disk does not keep the "
                     "octets sent. APPE ignores it."),
    CommandSpec("RETR", h.retr, "Download a file.", arg="a file name", perm="read",
                syntax="<path>", rfc="RFC 959 §4.1.3", note=_ASCII_NOTE),
    CommandSpec("STOR", h.stor, "Upload a file.", arg="a file name", perm="write",
                syntax="<path>", rfc="RFC 959 §4.1.3",
                note="Written to a temporary name and renamed into place on success: an "
                     "aborted upload never truncates a good file. TYPE A: CR LF becomes "
                     "LF; any other CR is kept."),
    CommandSpec("APPE", h.appe, "Append to a file.", arg="a file name", perm="write",
                syntax="<path>", rfc="RFC 959 §4.1.3", note="Written in place."),
    CommandSpec("STOU", h.stou, "Upload to a unique new name.", perm="write",
                syntax="[<name>]", rfc="RFC 959 §4.1.3; RFC 1123 §4.1.2.9",
                note="150 FILE: <name>, as RFC 1123 asks."),
    CommandSpec("LIST", h.list_, "List a directory (ls -l style).", perm="list",
                syntax="[<path>]", rfc="RFC 959 §4.1.3",
                note="`ls -l` lines; options such as `-la` are accepted and ignored."),
    CommandSpec("NLST", h.nlst, "List names only.", perm="list", syntax="[<path>]",
                rfc="RFC 959 §4.1.3",
                note="Names of a directory's entries, prefixed with the path given."),
    CommandSpec("MLSD", h.mlsd, "List a directory as machine-readable facts (RFC 3659).",
                perm="list", syntax="[<path>]", rfc="RFC 3659 §7",
                note="A file argument: 501 (use MLST)."),
    CommandSpec("MLST", h.mlst, "Facts of one path (RFC 3659).", perm="list",
                syntax="[<path>]", rfc="RFC 3659 §7"),
    CommandSpec("ABOR", h.abor, "Abort the transfer in progress.", rfc="RFC 959 §4.1.3",
                note="During a transfer (also when it came in the same read as the "
                     "command that started it): 426 for the transfer, then 226. "
                     "Otherwise, also right after a login or a transfer has replied: 225 "
                     "\"no transfer to abort\", and an open data connection is closed."),
    CommandSpec("PASV", h.pasv, "Passive mode: the server listens (IPv4).",
                rfc="RFC 959 §4.1.2",
                note="IPv4 only (425 on an IPv6 connection: use EPSV). The address is "
                     "chosen per client (nat.*); never 0.0.0.0."),
    CommandSpec("EPSV", h.epsv, "Extended passive mode (RFC 2428).", syntax="[1 | 2 | ALL]",
                feat="EPSV", rfc="RFC 2428 §3",
                note="EPSV ALL accepted; PASV, PORT and EPRT are refused after it."),
    CommandSpec("PORT", h.port, "Active mode: the server connects to h1,h2,h3,h4,p1,p2.",
                arg="h1,h2,h3,h4,p1,p2", syntax="<h1,h2,h3,h4,p1,p2>", rfc="RFC 959 §4.1.2",
                note="Only to the client's own address and ports >= 1024 (bounce "
                     "protection, RFC 2577; active.allow_foreign_address, "
                     "active.allow_low_ports)."),
    CommandSpec("EPRT", h.eprt, "Extended active mode (RFC 2428).", arg="|proto|addr|port|",
                syntax="|<proto>|<address>|<port>|", feat="EPRT", rfc="RFC 2428 §2",
                note="As PORT; the unspecified address means the client's own."),
    CommandSpec("SITE", site, "Server-specific commands; SITE HELP lists them.",
                login=False, arg="a SITE command (SITE HELP lists them)",
                syntax="<command> [<arguments>]", rfc="RFC 959 §4.1.3",
                note="CHMOD and HELP (table below)."),
]

TABLE: dict[str, CommandSpec] = {row.name: row for row in _ROWS}

#: SITE subcommands (``SITE X ...``): the same preconditions as commands, checked by the
#: session before the handler runs
SITE_TABLE: dict[str, CommandSpec] = {row.name: row for row in [
    CommandSpec("HELP", site_help, "List the SITE commands, or describe one.",
                login=False, syntax="[<command>]", rfc="RFC 959 §4.1.3 (SITE)",
                note="Says which ones this login may not use, and the setting why."),
    CommandSpec("CHMOD", h.site_chmod, "Change the permission bits of a file or "
                "directory.", arg="an octal mode and a path, e.g. 644 notes.txt",
                perm="chmod", syntax="<mode> <path>", rfc="as vsftpd, ProFTPD, pyftpdlib",
                note="Octal 000-777 only (setuid, setgid, sticky: 550). A symlink is "
                     "refused, never followed. Needs permissions.chmod (default: the "
                     "user's write permission; never for anonymous) and read_only = "
                     "false."),
]}

#: commands real clients send that this server knowingly does not implement (-> 502)
NOT_IMPLEMENTED = {
    "ACCT": "accounts are not used", "SMNT": "structure mount is obsolete",
    "LPRT": "use EPRT", "LPSV": "use EPSV", "CLNT": "not needed", "LANG": "English only",
    "XRCP": "obsolete", "XSEN": "obsolete", "MAIL": "obsolete", "MLFL": "obsolete",
}

#: SITE subcommands other servers offer that this one knowingly does not (-> 502)
SITE_NOT_IMPLEMENTED = {
    "UMASK": "uploads are created with mode 644, directories 755; SITE CHMOD changes "
             "them",
    "UTIME": "use MFMT",
    "IDLE": "the idle timeout is the server's (timeouts.idle)",
    "SYMLINK": "clients do not create symlinks here",
    "EXEC": "no commands are run for clients",
}


def features(mlst_facts: Iterable[str], caps: Collection[str] = ()) -> list[str]:
    """FEAT lines, derived from the table; rows needing a capability not in ``caps`` are
    left out."""
    out = sorted({row.feat for row in _ROWS if row.feat and
                  (row.needs is None or row.needs in caps)})
    out.append(mlst_feat(mlst_facts))
    out.append("TVFS")
    return sorted(out)


#: the setting that turns a capability on (docs/conformance.md)
NEEDS_SETTING = {"tls": "tls.enabled", "ccc": "tls.ccc"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _spec_rows(rows: Iterable[CommandSpec], prefix: str = "") -> list[str]:
    out = []
    for row in rows:
        cmd = f"`{_cell(f'{prefix}{row.name} {row.syntax}'.strip())}`"
        perm = f"permissions.{row.perm}" if row.perm else ""
        extra = [f"FEAT `{row.feat}`" if row.feat else "",
                 f"only with {NEEDS_SETTING[row.needs]}" if row.needs else ""]
        cells = [cmd, _cell(row.help), row.rfc or "natftp", "yes" if row.login else "no",
                 perm, "; ".join(e for e in extra if e), _cell(row.note)]
        out.append("| " + " | ".join(cells) + " |")
    return out


#: the generated part of docs/conformance.md lies between these lines
CONFORMANCE_BEGIN = ("<!-- generated from natftp.server.commands by "
                     "scripts/gen-conformance.py: edit the table, not this part -->")
CONFORMANCE_END = "<!-- end of the generated part -->"


def conformance_markdown() -> str:
    """The generated part of ``docs/conformance.md``: every command of the table, the
    SITE table and the 502 list, each with the specification it follows and what natftp
    does where that leaves a choice. A test compares it with the page, so the page
    cannot drift from the code; ``scripts/gen-conformance.py`` rewrites it."""
    head = ["| Command | What it does | Follows | Login needed | Permission | "
            "FEAT / needs | natftp's choices where the specification leaves some |",
            "|---|---|---|---|---|---|---|"]
    lines = ["### Commands", "", *head, *_spec_rows(_ROWS), "",
             "### SITE commands", "", *head, *_spec_rows(SITE_TABLE.values(), "SITE "), "",
             "### Known, not implemented (502, with the reason)", "",
             "| Command | Why |", "|---|---|",
             *(f"| `{n}` | {why} |" for n, why in sorted(NOT_IMPLEMENTED.items())),
             *(f"| `SITE {n}` | {why} |" for n, why in sorted(SITE_NOT_IMPLEMENTED.items()))]
    return "\n".join([CONFORMANCE_BEGIN, "", *lines, "", CONFORMANCE_END])
