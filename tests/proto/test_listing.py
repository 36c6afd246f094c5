"""ls -l lines and MLSD/MLST facts."""

from __future__ import annotations

import calendar
import os
import stat
from datetime import UTC, datetime

import pytest

from natftp.proto import listing
from natftp.proto.listing import FileFacts
from natftp.proto.listparse import (  # the client's parsers read what we write
    parse_list_line,
    parse_mlsx_line,
)

NOW = calendar.timegm((2026, 11, 23, 12, 0, 0))
RECENT = calendar.timegm((2026, 10, 2, 15, 4, 0))
OLD = calendar.timegm((2020, 1, 2, 3, 4, 5))
FILE = FileFacts("a file.txt", stat.S_IFREG | 0o644, 1234, RECENT, 1, "ftp", "ftp", "fe01g2")
DIR = FileFacts("sub", stat.S_IFDIR | 0o755, 4096, OLD, 2)


def test_ls_line_recent_and_old_dates() -> None:
    assert listing.ls_line(FILE, NOW) == (
        "-rw-r--r--    1 ftp      ftp              1234 Oct 02 15:04 a file.txt")
    assert listing.ls_line(DIR, NOW) == (
        "drwxr-xr-x    2 ftp      ftp              4096 Jan 02  2020 sub")
    future = FileFacts("f", stat.S_IFREG | 0o600, 1, NOW + 86400 * 30)
    assert listing.ls_date(future.mtime, NOW).endswith(" 2026")


def test_ls_lines_parse_back_with_the_client_parser() -> None:
    now = datetime.fromtimestamp(NOW, UTC)
    e = parse_list_line(listing.ls_line(FILE, NOW), now=now)
    assert e is not None and e.name == "a file.txt" and e.size == 1234 and e.is_file
    assert e.modified is not None and e.modified.timestamp() == RECENT
    d = parse_list_line(listing.ls_line(DIR, NOW), now=now)
    assert d is not None and d.name == "sub" and d.is_dir


def test_mlsd_lines_parse_back_with_the_client_parser() -> None:
    e = parse_mlsx_line(listing.mlst_line(FILE, "adfrw"))
    assert e.name == "a file.txt" and e.size == 1234 and e.facts["unix.mode"] == "0644"


def test_mlst_line_and_fact_selection() -> None:
    assert listing.mlst_line(FILE, "adfrw") == (
        "type=file;size=1234;modify=20261002150400;perm=adfrw;unique=fe01g2;"
        "unix.mode=0644; a file.txt")
    assert listing.mlst_line(DIR, "el", ("type", "perm")) == "type=dir;perm=el; sub"
    assert listing.mlst_line(FILE, "r", ("size",), name="/a file.txt") == \
        "size=1234; /a file.txt"


def test_mlst_time_round_trip_with_milliseconds() -> None:
    assert listing.mlst_time(OLD) == "20200102030405"
    assert listing.mlst_time(OLD + 0.25) == "20200102030405.250"
    assert listing.parse_mlst_time("20200102030405") == OLD
    assert listing.parse_mlst_time("20200102030405.5") == OLD + 0.5
    for bad in ("2020", "2020010203040x", "20200102030405.x", "20201302030405"):
        with pytest.raises(ValueError):
            listing.parse_mlst_time(bad)


def test_perm_fact_follows_permissions() -> None:
    all_on = dict(read=True, write=True, delete=True, rename=True, mkdir=True, list_=True)
    assert listing.mlst_perm(FILE, **all_on) == "adfrw"
    assert listing.mlst_perm(DIR, **all_on) == "cdeflmp"
    ro = dict(all_on, write=False, delete=False, rename=False, mkdir=False)
    assert listing.mlst_perm(FILE, **ro) == "r"
    assert listing.mlst_perm(DIR, **ro) == "el"


def test_feat_line_and_opts_selection() -> None:
    assert listing.mlst_feat(("type", "size")) == \
        "MLST type*;size*;modify;perm;unique;unix.mode;"
    assert listing.select_facts("Type;SIZE;bogus;") == ("type", "size")


@pytest.mark.parametrize(("arg", "out"), [("", ("", "")), ("-la", ("la", "")),
                                          ("-l -a dir x", ("la", "dir x")),
                                          ("./-name", ("", "./-name"))])
def test_split_list_arg(arg: str, out: tuple[str, str]) -> None:
    assert listing.split_list_arg(arg) == out


def test_from_stat(tmp_path: os.PathLike[str]) -> None:
    p = os.path.join(tmp_path, "x")
    with open(p, "wb") as f:
        f.write(b"abc")
    f2 = FileFacts.from_stat("x", os.stat(p))
    assert f2.is_file and f2.size == 3 and not f2.is_dir and "g" in f2.unique
