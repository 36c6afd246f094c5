"""The command table: one row per command, and everything derived from it.

Each row says whether the command needs a login, what argument it needs (None: none
required), which permission it checks, which server capability it needs (``tls``,
``ccc``), its help text and its handler. The session checks the preconditions from the
row; FEAT, HELP and the 500/502 replies come from this table, never from a second list: a
row whose capability is off is left out of FEAT and HELP and answered with 502 and the
setting that turns it on.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from natftp.proto.listing import mlst_feat
from natftp.server import handlers as h
from natftp.server.session import Session


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    handler: Callable[[Session, str], h.Result]
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


#: why a capability is off, for the 502 reply (and what turns it on)
OFF_REASON = {
    "tls": "TLS is off on this server (tls.enabled = false; turn on with --tls or "
           "--tls-cert)",
    "ccc": "clearing the control channel is off (tls.ccc = false; turn on with --tls-ccc)",
}


_ROWS = [
    CommandSpec("USER", h.user, "Send the user name.", login=False, arg="a user name",
                syntax="<name>"),
    CommandSpec("PASS", h.pass_, "Send the password.", login=False, syntax="<password>"),
    CommandSpec("REIN", h.rein, "Reinitialize: log out and reset the transfer parameters.",
                login=False),
    CommandSpec("QUIT", h.quit_, "Close the connection.", login=False),
    CommandSpec("NOOP", h.noop, "Do nothing (keep the connection alive).", login=False),
    CommandSpec("SYST", h.syst, "Name the system type.", login=False),
    CommandSpec("FEAT", h.feat, "List the extensions supported.", login=False),
    CommandSpec("OPTS", h.opts, "Set an option (UTF8 ON, MLST facts).", login=False,
                arg="an option, e.g. UTF8 ON", syntax="<option> <value>", feat="UTF8"),
    CommandSpec("HELP", h.help_, "List the commands, or describe one.", login=False,
                syntax="[<command>]"),
    CommandSpec("STAT", h.stat, "Server status, or a listing of a path on the control "
                "connection.", login=False, syntax="[<path>]"),
    CommandSpec("HOST", h.host, "Name the virtual host (RFC 7151).", login=False,
                arg="a host name", syntax="<hostname>", feat="HOST"),
    CommandSpec("AUTH", h.auth, "Start TLS on the control connection (RFC 4217).",
                login=False, arg="TLS", syntax="TLS", feat="AUTH TLS", needs="tls"),
    CommandSpec("PBSZ", h.pbsz, "Protection buffer size (0 with TLS).", login=False,
                arg="0", syntax="0", feat="PBSZ", needs="tls"),
    CommandSpec("PROT", h.prot, "Data protection: P (TLS) or C (clear).", login=False,
                arg="P or C", syntax="P | C", feat="PROT", needs="tls"),
    CommandSpec("CCC", h.ccc, "Clear the command channel: end TLS on the control "
                "connection after login (data stays as PROT says).", feat="CCC",
                needs="ccc"),
    CommandSpec("CWD", h.cwd, "Change the working directory.", arg="a directory",
                syntax="<path>"),
    CommandSpec("XCWD", h.cwd, "Change the working directory (RFC 775).",
                arg="a directory", syntax="<path>"),
    CommandSpec("CDUP", h.cdup, "Go to the parent directory."),
    CommandSpec("XCUP", h.cdup, "Go to the parent directory (RFC 775)."),
    CommandSpec("PWD", h.pwd, "Print the working directory."),
    CommandSpec("XPWD", h.pwd, "Print the working directory (RFC 775)."),
    CommandSpec("MKD", h.mkd, "Create a directory.", arg="a directory name",
                perm="mkdir", syntax="<path>"),
    CommandSpec("XMKD", h.mkd, "Create a directory (RFC 775).", arg="a directory name",
                perm="mkdir", syntax="<path>"),
    CommandSpec("RMD", h.rmd, "Remove an empty directory.", arg="a directory name",
                perm="delete", syntax="<path>"),
    CommandSpec("XRMD", h.rmd, "Remove an empty directory (RFC 775).",
                arg="a directory name", perm="delete", syntax="<path>"),
    CommandSpec("DELE", h.dele, "Delete a file.", arg="a file name", perm="delete",
                syntax="<path>"),
    CommandSpec("RNFR", h.rnfr, "Name the file to rename.", arg="a path", perm="rename",
                syntax="<path>"),
    CommandSpec("RNTO", h.rnto, "Rename the file named by RNFR.", arg="the new path",
                perm="rename", syntax="<path>"),
    CommandSpec("SIZE", h.size, "Size of a file in bytes.", arg="a file name",
                perm="list", syntax="<path>", feat="SIZE"),
    CommandSpec("MDTM", h.mdtm, "Modification time of a file.", arg="a file name",
                perm="list", syntax="<path>", feat="MDTM"),
    CommandSpec("MFMT", h.mfmt, "Set the modification time of a file.",
                arg="YYYYMMDDHHMMSS and a path", perm="write",
                syntax="<YYYYMMDDHHMMSS> <path>", feat="MFMT"),
    CommandSpec("TYPE", h.type_, "Set the transfer type: A (ASCII) or I (binary).",
                arg="A or I", syntax="A | I"),
    CommandSpec("MODE", h.mode, "Set the transfer mode (S only).", arg="S", syntax="S"),
    CommandSpec("STRU", h.stru, "Set the file structure (F only).", arg="F", syntax="F"),
    CommandSpec("ALLO", h.allo, "Reserve space (not needed here)."),
    CommandSpec("REST", h.rest, "Restart the next RETR, STOR or APPE at an offset.",
                arg="a byte offset", syntax="<offset>", feat="REST STREAM"),
    CommandSpec("RETR", h.retr, "Download a file.", arg="a file name", perm="read",
                syntax="<path>"),
    CommandSpec("STOR", h.stor, "Upload a file.", arg="a file name", perm="write",
                syntax="<path>"),
    CommandSpec("APPE", h.appe, "Append to a file.", arg="a file name", perm="write",
                syntax="<path>"),
    CommandSpec("STOU", h.stou, "Upload to a unique new name.", perm="write",
                syntax="[<name>]"),
    CommandSpec("LIST", h.list_, "List a directory (ls -l style).", perm="list",
                syntax="[<path>]"),
    CommandSpec("NLST", h.nlst, "List names only.", perm="list", syntax="[<path>]"),
    CommandSpec("MLSD", h.mlsd, "List a directory as machine-readable facts (RFC 3659).",
                perm="list", syntax="[<path>]"),
    CommandSpec("MLST", h.mlst, "Facts of one path (RFC 3659).", perm="list",
                syntax="[<path>]"),
    CommandSpec("ABOR", h.abor, "Abort the transfer in progress."),
    CommandSpec("PASV", h.pasv, "Passive mode: the server listens (IPv4)."),
    CommandSpec("EPSV", h.epsv, "Extended passive mode (RFC 2428).", syntax="[1 | 2 | ALL]",
                feat="EPSV"),
    CommandSpec("PORT", h.port, "Active mode: the server connects to h1,h2,h3,h4,p1,p2.",
                arg="h1,h2,h3,h4,p1,p2", syntax="<h1,h2,h3,h4,p1,p2>"),
    CommandSpec("EPRT", h.eprt, "Extended active mode (RFC 2428).", arg="|proto|addr|port|",
                syntax="|<proto>|<address>|<port>|", feat="EPRT"),
]

TABLE: dict[str, CommandSpec] = {row.name: row for row in _ROWS}

#: commands real clients send that this server knowingly does not implement (-> 502)
NOT_IMPLEMENTED = {
    "ACCT": "accounts are not used", "SMNT": "structure mount is obsolete",
    "SITE": "no SITE commands",
    "LPRT": "use EPRT", "LPSV": "use EPSV", "CLNT": "not needed", "LANG": "English only",
    "XRCP": "obsolete", "XSEN": "obsolete", "MAIL": "obsolete", "MLFL": "obsolete",
}


def features(mlst_facts: Iterable[str], caps: Collection[str] = ()) -> list[str]:
    """FEAT lines, derived from the table; rows needing a capability not in ``caps`` are
    left out."""
    out = sorted({row.feat for row in _ROWS if row.feat and
                  (row.needs is None or row.needs in caps)})
    out.append(mlst_feat(mlst_facts))
    out.append("TVFS")
    return sorted(out)
