"""Listing parsers: MLSD facts, Unix ls -l lines, Windows/IIS DOS lines."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from natftp.proto.listparse import (
    ListingError,
    format_mlsx_time,
    parse_dos_line,
    parse_facts,
    parse_list,
    parse_list_line,
    parse_mlsd,
    parse_mlsx_line,
    parse_mlsx_time,
    parse_unix_line,
)

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def test_mlsd_file_line_gives_size_utc_time_and_verbatim_name() -> None:
    e = parse_mlsx_line("type=file;size=1024;modify=20240102030405;perm=adfrw; a b;c.txt")
    assert e.name == "a b;c.txt"
    assert e.type == "file" and e.size == 1024
    assert e.modified == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert e.facts["perm"] == "adfrw"


def test_mlsd_fact_names_are_case_insensitive_and_fraction_is_kept() -> None:
    e = parse_mlsx_line("Type=DIR;Modify=20240102030405.250;UNIX.mode=0755; 日本語 ディレクトリ")
    assert e.type == "dir" and e.name == "日本語 ディレクトリ"
    assert e.modified == datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)
    assert e.permissions == "0755"


def test_mlsd_listing_drops_cdir_and_pdir() -> None:
    entries = parse_mlsd([
        "type=cdir;modify=20240102030405; .",
        "type=pdir;modify=20240102030405; ..",
        "type=file;size=0;modify=20240102030405; empty",
        "",
    ])
    assert [e.name for e in entries] == ["empty"]


def test_mlsd_unix_symlink_keeps_target() -> None:
    e = parse_mlsx_line("type=OS.unix=slink:/Etc/Target;size=12; link")
    assert e.type == "link" and e.target == "/Etc/Target"


def test_mlst_reply_line_with_leading_space() -> None:
    e = parse_mlsx_line(" type=file;size=5;modify=20200101000000; /dir/hello.txt")
    assert e.name == "/dir/hello.txt" and e.size == 5


@pytest.mark.parametrize("bad", ["noname", "type=file;size=3;", "20240101"])
def test_mlsd_garbage_is_refused(bad: str) -> None:
    with pytest.raises(ListingError):
        parse_mlsx_line(bad)


def test_mlsx_time_round_trip_and_bad_values() -> None:
    t = parse_mlsx_time("19991231235959")
    assert format_mlsx_time(t) == "19991231235959"
    with pytest.raises(ListingError):
        parse_mlsx_time("2024")
    with pytest.raises(ListingError):
        parse_mlsx_time("20241301000000")
    assert parse_facts("a=1;b=;") == {"a": "1", "b": ""}


def test_unix_line_recent_date_with_time_and_spaces_in_name() -> None:
    e = parse_unix_line("-rw-r--r--    1 ftp      ftp          1234 Mar 01 09:30 my file.txt",
                        now=NOW)
    assert e.name == "my file.txt" and e.size == 1234 and e.type == "file"
    assert e.modified == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert e.precision == 60.0


def test_unix_line_future_yearless_date_is_last_year() -> None:
    e = parse_unix_line("-rw-r--r-- 1 u g 1 Dec 24 18:00 x", now=NOW)
    assert e.modified == datetime(2025, 12, 24, 18, 0, tzinfo=UTC)


def test_unix_line_with_year_and_directory() -> None:
    e = parse_unix_line("drwxr-xr-x   2 1000     1000         4096 Jan  1  2020 sub dir", now=NOW)
    assert e.type == "dir" and e.name == "sub dir"
    assert e.modified == datetime(2020, 1, 1, tzinfo=UTC) and e.precision == 86400.0


def test_unix_line_symlink_missing_group_and_acl_marker() -> None:
    e = parse_unix_line("lrwxrwxrwx+ 1 owner 7 Feb 02 10:00 latest -> v1.2.3", now=NOW)
    assert e.type == "link" and e.name == "latest" and e.target == "v1.2.3"
    assert e.size == 7


def test_unix_line_owner_with_digits_before_month_like_text() -> None:
    # owner "1000" and group "Dec" must not be mistaken for size and month
    e = parse_unix_line("-rw-r--r-- 1 1000 Dec 42 Jan 05 2021 名前.txt", now=NOW)
    assert e.size == 42 and e.name == "名前.txt"


def test_dos_lines_dir_file_ampm_and_24h() -> None:
    d = parse_dos_line("01-13-21  03:04PM       <DIR>          Program Files")
    assert d.type == "dir" and d.name == "Program Files"
    assert d.modified == datetime(2021, 1, 13, 15, 4, tzinfo=UTC)
    f = parse_dos_line("12-31-1999  12:15AM              1,234,567 big file.bin")
    assert f.type == "file" and f.size == 1234567
    assert f.modified == datetime(1999, 12, 31, 0, 15, tzinfo=UTC)
    g = parse_dos_line("07-04-2023  23:59                 10 a.txt")
    assert g.modified == datetime(2023, 7, 4, 23, 59, tzinfo=UTC)


def test_list_auto_detects_and_skips_total_and_dots() -> None:
    lines = [
        "total 8",
        "drwxr-xr-x 2 u g 4096 Mar 01 09:30 .",
        "drwxr-xr-x 2 u g 4096 Mar 01 09:30 ..",
        "-rw-r--r-- 1 u g 3 Mar 01 09:30 a",
        "01-13-21  03:04PM                 5 b",
    ]
    assert [(e.name, e.size) for e in parse_list(lines, now=NOW)] == [("a", 3), ("b", 5)]
    assert parse_list_line("", now=NOW) is None


@pytest.mark.parametrize("bad", ["hello world", "-rw-r--r-- 1 u g x Mar 01 09:30 a",
                                 "13-45-21  03:04PM  5 x"])
def test_list_garbage_raises(bad: str) -> None:
    with pytest.raises(ListingError):
        parse_list_line(bad, now=NOW)
