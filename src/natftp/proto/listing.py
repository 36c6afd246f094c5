"""Directory listings as servers write them: ``ls -l`` lines for LIST, facts for MLSD/MLST.

Pure: the caller stats the files and passes :class:`FileFacts` plus the current time (for
the recent/old date choice ``ls`` makes). Times are UTC, as vsftpd does by default, so a
listing does not depend on the server's time zone. Parsing other servers' listings lives
in ``listparse.py``.
"""

from __future__ import annotations

import calendar
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

#: ``ls`` shows the time of day for files modified within about six months, else the year
SIX_MONTHS = 182 * 24 * 3600
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")

#: the MLST facts this server offers, in FEAT order (RFC 3659 7.8)
MLST_FACTS = ("type", "size", "modify", "perm", "unique", "unix.mode")


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What a listing needs to know about one directory entry (from ``os.stat``)."""

    name: str
    mode: int
    size: int
    mtime: float
    nlink: int = 1
    owner: str = "ftp"
    group: str = "ftp"
    unique: str = ""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @classmethod
    def from_stat(cls, name: str, st: _StatLike, owner: str = "ftp",
                  group: str = "ftp") -> FileFacts:
        return cls(name, st.st_mode, st.st_size, st.st_mtime, st.st_nlink, owner, group,
                   f"{st.st_dev:x}g{st.st_ino:x}")


class _StatLike(Protocol):
    """The fields of ``os.stat_result`` a listing uses."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_mtime(self) -> float: ...
    @property
    def st_nlink(self) -> int: ...
    @property
    def st_dev(self) -> int: ...
    @property
    def st_ino(self) -> int: ...


def ls_date(mtime: float, now: float) -> str:
    """``Jan 02 15:04`` for a recent time, ``Jan 02  2020`` for an old or future one."""
    t = time.gmtime(mtime)
    month = _MONTHS[t.tm_mon - 1]
    if now - SIX_MONTHS < mtime <= now + 3600:
        return f"{month} {t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}"
    return f"{month} {t.tm_mday:02d}  {t.tm_year}"


def ls_line(f: FileFacts, now: float) -> str:
    """One ``ls -l`` line: ``-rw-r--r--    1 ftp      ftp          1234 Jan 02 15:04 x``."""
    return (f"{stat.filemode(f.mode)} {f.nlink:>4} {f.owner:<8} {f.group:<8} "
            f"{f.size:>12} {ls_date(f.mtime, now)} {f.name}")


def mlst_time(mtime: float) -> str:
    """RFC 3659 time-val: ``YYYYMMDDHHMMSS`` (UTC), with milliseconds when not whole."""
    t = time.gmtime(mtime)
    base = time.strftime("%Y%m%d%H%M%S", t)
    ms = int(round((mtime - int(mtime)) * 1000)) % 1000
    return f"{base}.{ms:03d}" if ms else base


def parse_mlst_time(value: str) -> float:
    """Inverse of :func:`mlst_time` (for MFMT); raises ValueError on a malformed value."""
    whole, _, frac = value.partition(".")
    if len(whole) != 14 or not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"time {value!r} is not YYYYMMDDHHMMSS[.sss]")
    t = time.strptime(whole, "%Y%m%d%H%M%S")
    return calendar.timegm(t) + (float("0." + frac) if frac else 0.0)


def mlst_perm(f: FileFacts, *, read: bool, write: bool, delete: bool, rename: bool,
              mkdir: bool, list_: bool) -> str:
    """The ``perm`` fact (RFC 3659 7.5.5) from a user's permissions."""
    out = []
    if f.is_dir:
        if write:
            out.append("c")
        if delete:
            out.append("d")
        out.append("e")
        if rename:
            out.append("f")
        if list_:
            out.append("l")
        if mkdir:
            out.append("m")
        if delete:
            out.append("p")
    else:
        if write:
            out.append("a")
        if delete:
            out.append("d")
        if rename:
            out.append("f")
        if read:
            out.append("r")
        if write:
            out.append("w")
    return "".join(out)


def mlst_type(f: FileFacts) -> str:
    if f.is_dir:
        return "dir"
    if f.is_file:
        return "file"
    return "OS.unix=" + ("symlink" if stat.S_ISLNK(f.mode) else "other")


def mlst_line(f: FileFacts, perm: str, facts: Iterable[str] = MLST_FACTS,
              name: str | None = None) -> str:
    """``type=file;size=3;modify=...;perm=r;unique=...;unix.mode=0644; name``.

    ``facts`` selects which facts appear (OPTS MLST); ``name`` replaces the entry's name
    (MLST shows the full path it was asked about).
    """
    want = {x.lower() for x in facts}
    parts = []
    if "type" in want:
        parts.append(f"type={mlst_type(f)}")
    if "size" in want and not f.is_dir:
        parts.append(f"size={f.size}")
    if "modify" in want:
        parts.append(f"modify={mlst_time(f.mtime)}")
    if "perm" in want:
        parts.append(f"perm={perm}")
    if "unique" in want and f.unique:
        parts.append(f"unique={f.unique}")
    if "unix.mode" in want:
        parts.append(f"unix.mode=0{stat.S_IMODE(f.mode):o}")
    return "".join(p + ";" for p in parts) + " " + (f.name if name is None else name)


def mlst_feat(selected: Iterable[str] = MLST_FACTS) -> str:
    """The FEAT line: ``MLST type*;size*;modify*;...`` (``*`` marks the selected facts)."""
    sel = {x.lower() for x in selected}
    return "MLST " + "".join(f + ("*" if f in sel else "") + ";" for f in MLST_FACTS)


def select_facts(arg: str) -> tuple[str, ...]:
    """``OPTS MLST type;size;`` -> the known facts named (unknown ones are ignored)."""
    asked = [x.strip().lower() for x in arg.split(";") if x.strip()]
    return tuple(f for f in MLST_FACTS if f in asked)


def split_list_arg(arg: str) -> tuple[str, str]:
    """``LIST -la dir`` -> ``("la", "dir")``. Clients pass ``ls`` options; servers
    ignore them. A name that starts with ``-`` can still be listed as ``./-name``."""
    opts = ""
    rest = arg.strip()
    while rest.startswith("-"):
        word, _, rest = rest.partition(" ")
        opts += word[1:]
        rest = rest.lstrip()
    return opts, rest
