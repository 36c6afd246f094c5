"""Reading directory listings: MLSD/MLST facts (RFC 3659) and LIST output.

MLSD is machine-readable and exact (UTC times to the second, sizes, types), so a client
asks for it first. LIST output was never standardised: Unix servers print ``ls -l`` lines,
IIS and other Windows servers print DOS ``dir`` lines. Both are parsed here, tolerantly,
into the same :class:`Entry` so that callers never care which one the server spoke.

Pure functions, no clock: a Unix line such as ``Jan 12 13:45`` has no year, and the year
is inferred from ``now``, which the caller passes in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

EntryType = Literal["file", "dir", "link", "other"]


class ListingError(ValueError):
    """A line that none of the parsers understands."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry, whatever the listing format it came from.

    ``precision`` says how exact ``modified`` is, in seconds: 1 from MLSD, 60 from an
    ``ls -l`` line with a time, a day from one with only a year; comparisons (mirroring)
    must allow for it.
    """

    name: str
    type: EntryType
    size: int | None = None
    modified: datetime | None = None
    precision: float = 1.0
    target: str | None = None
    permissions: str | None = None
    facts: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"

    @property
    def is_file(self) -> bool:
        return self.type == "file"


# -- MLSD / MLST --------------------------------------------------------------------

def parse_mlsx_time(value: str) -> datetime:
    """``YYYYMMDDHHMMSS[.sss]`` in UTC (RFC 3659 section 2.3)."""
    value = value.strip()
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,6}))?", value)
    if m is None:
        raise ListingError(f"not an RFC 3659 time value: {value!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or "0"
    micro = int(frac.ljust(6, "0")[:6])
    try:
        return datetime(y, mo, d, h, mi, min(s, 59), micro, tzinfo=UTC)
    except ValueError as e:
        raise ListingError(f"impossible time value {value!r}: {e}") from e


def format_mlsx_time(when: datetime) -> str:
    """The inverse of :func:`parse_mlsx_time` (for MFMT); naive times are taken as UTC."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y%m%d%H%M%S")


def parse_facts(text: str) -> dict[str, str]:
    """``type=file;size=3;modify=...;`` -> ``{"type": "file", ...}`` (names lower-cased)."""
    facts: dict[str, str] = {}
    for part in text.split(";"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq:
            raise ListingError(f"fact without '=': {part!r}")
        facts[name.strip().lower()] = value
    return facts


def parse_mlsx_line(line: str) -> Entry:
    """One MLSD line or the entry line of an MLST reply: ``facts; name``.

    The name is everything after the first space, verbatim (it may contain spaces and
    semicolons). ``cdir``/``pdir`` entries keep their type in ``facts["type"]`` and are
    reported as directories; :func:`parse_mlsd` drops them.
    """
    line = line.rstrip("\r\n")
    if line.startswith(" "):  # MLST reply lines are indented by one space
        line = line[1:]
    facts_text, sep, name = line.partition(" ")
    if not sep or not name:
        raise ListingError(f"MLSD line without a name: {line!r}")
    if "=" not in facts_text and facts_text:
        raise ListingError(f"MLSD line without facts: {line!r}")
    facts = parse_facts(facts_text)
    kind = facts.get("type", "").lower()
    target: str | None = None
    etype: EntryType
    if kind == "file":
        etype = "file"
    elif kind in ("dir", "cdir", "pdir"):
        etype = "dir"
    elif kind.startswith("os.unix=slink") or kind.startswith("os.unix=symlink"):
        etype = "link"
        _, _, tail = kind.partition(":")
        # keep the target's original case from the raw fact
        raw = facts.get("type", "")
        target = raw[len(raw) - len(tail):] if tail else None
    else:
        etype = "other"
    size: int | None = None
    for key in ("size", "sizd"):
        if key in facts and facts[key].isdigit():
            size = int(facts[key])
            break
    modified = parse_mlsx_time(facts["modify"]) if "modify" in facts else None
    mode = facts.get("unix.mode")
    return Entry(name=name, type=etype, size=size, modified=modified, precision=1.0,
                 target=target, permissions=mode, facts=facts)


def parse_mlsd(lines: Iterable[str]) -> list[Entry]:
    """All entries of an MLSD listing, without the ``cdir``/``pdir`` ones."""
    out: list[Entry] = []
    for line in lines:
        if not line.strip():
            continue
        e = parse_mlsx_line(line)
        if e.facts.get("type", "").lower() in ("cdir", "pdir") or e.name in (".", ".."):
            continue
        out.append(e)
    return out


# -- LIST: Unix ls -l ---------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}

_UNIX_MODE = re.compile(r"^(?P<mode>[-bcdlpsD][-rwxsStTlL]{9})[+.@]?\s+(?P<rest>.*)$")
_UNIX_TAIL = re.compile(
    r"(?P<size>\d+)\s+(?P<mon>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+"
    r"(?P<ty>\d{1,2}:\d{2}(?::\d{2})?|\d{4})\s(?P<name>.+)$")


def parse_unix_line(line: str, *, now: datetime) -> Entry:
    """One ``ls -l`` line (vsftpd, ProFTPD, Pure-FTPd, pyftpdlib, most Unix servers).

    The owner/group columns vary (missing group, numeric ids, names with spaces), so the
    line is anchored on the mode at the start and the ``size month day time|year`` run
    before the name. A year-less date in the future (beyond a day of clock skew) belongs
    to the previous year, which is what ``ls`` means by it.
    """
    line = line.rstrip("\r\n")
    m = _UNIX_MODE.match(line)
    if m is None:
        raise ListingError(f"not an ls -l line: {line!r}")
    mode = m.group("mode")
    tail = None
    for cand in _UNIX_TAIL.finditer(m.group("rest")):
        if cand.group("mon").lower() in _MONTHS:
            tail = cand
            break
    if tail is None:
        raise ListingError(f"no size and date in ls -l line: {line!r}")
    month = _MONTHS[tail.group("mon").lower()]
    day = int(tail.group("day"))
    ty = tail.group("ty")
    nowu = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    precision: float
    try:
        if ":" in ty:
            hh, mm, *ss = (int(x) for x in ty.split(":"))
            year = nowu.year
            when = datetime(year, month, day, hh, mm, ss[0] if ss else 0, tzinfo=UTC)
            if when > nowu + timedelta(days=1):
                when = when.replace(year=year - 1)
            precision = 1.0 if ss else 60.0
        else:
            when = datetime(int(ty), month, day, tzinfo=UTC)
            precision = 86400.0
    except ValueError as e:
        raise ListingError(f"impossible date in ls -l line {line!r}: {e}") from e
    name = tail.group("name")
    target: str | None = None
    kind = mode[0]
    etype: EntryType
    if kind == "d":
        etype = "dir"
    elif kind == "-":
        etype = "file"
    elif kind == "l":
        etype = "link"
        if " -> " in name:
            name, target = name.split(" -> ", 1)
    else:
        etype = "other"
    return Entry(name=name, type=etype, size=int(tail.group("size")), modified=when,
                 precision=precision, target=target, permissions=mode)


# -- LIST: Windows / IIS DOS style --------------------------------------------------

_DOS = re.compile(
    r"^(?P<mo>\d{1,2})[-/.](?P<d>\d{1,2})[-/.](?P<y>\d{2}|\d{4})\s+"
    r"(?P<h>\d{1,2}):(?P<mi>\d{2})\s*(?P<ampm>[AaPp][Mm])?\s+"
    r"(?P<what><DIR>|\d[\d,]*)\s+(?P<name>.+)$")


def parse_dos_line(line: str) -> Entry:
    """One IIS/Windows line: ``01-13-21  03:04PM  <DIR>  name`` or ``... 1234 name``."""
    line = line.rstrip("\r\n")
    m = _DOS.match(line)
    if m is None:
        raise ListingError(f"not a DOS-style listing line: {line!r}")
    year = int(m.group("y"))
    if year < 100:
        year += 2000 if year < 70 else 1900
    hour = int(m.group("h"))
    ampm = (m.group("ampm") or "").upper()
    if ampm == "PM" and hour < 12:
        hour += 12
    elif ampm == "AM" and hour == 12:
        hour = 0
    try:
        when = datetime(year, int(m.group("mo")), int(m.group("d")), hour,
                        int(m.group("mi")), tzinfo=UTC)
    except ValueError as e:
        raise ListingError(f"impossible date in DOS listing line {line!r}: {e}") from e
    what = m.group("what")
    if what == "<DIR>":
        return Entry(name=m.group("name"), type="dir", modified=when, precision=60.0)
    return Entry(name=m.group("name"), type="file", size=int(what.replace(",", "")),
                 modified=when, precision=60.0)


# -- LIST: any ----------------------------------------------------------------------

def parse_list_line(line: str, *, now: datetime) -> Entry | None:
    """Parse one LIST line in whichever format it is; None for lines that carry no
    entry (``total 12``, blank lines, ``.`` and ``..``)."""
    stripped = line.rstrip("\r\n")
    if not stripped.strip() or re.match(r"^total\s+\d+", stripped, re.IGNORECASE):
        return None
    if stripped[0].isdigit():
        entry = parse_dos_line(stripped)
    else:
        entry = parse_unix_line(stripped, now=now)
    if entry.name in (".", ".."):
        return None
    return entry


def parse_list(lines: Iterable[str], *, now: datetime) -> list[Entry]:
    """All entries of a LIST listing; lines no parser understands raise ListingError."""
    out: list[Entry] = []
    for line in lines:
        e = parse_list_line(line, now=now)
        if e is not None:
            out.append(e)
    return out
