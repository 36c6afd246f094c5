"""Command lines: every server command parses; framing, limits, Telnet IAC."""

from __future__ import annotations

import pytest

from natftp.proto.commands import BadLine, Command, LineReader, parse_line
from natftp.server.commands import TABLE


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_server_command_parses(name: str) -> None:
    assert parse_line(f"{name.lower()} some arg".encode()) == Command(name, "some arg")
    assert parse_line(name.encode()) == Command(name, "")


def test_argument_is_kept_verbatim_with_spaces() -> None:
    assert parse_line(b"STOR  two  spaces ") == Command("STOR", " two  spaces ")
    assert parse_line("RETR 進捗どうですか.jpg".encode()) == Command("RETR", "進捗どうですか.jpg")


def test_latin1_bytes_survive_as_surrogates() -> None:
    c = parse_line(b"RETR caf\xe9")
    assert isinstance(c, Command)
    assert c.arg.encode("utf-8", "surrogateescape") == b"caf\xe9"


@pytest.mark.parametrize(("line", "code"), [(b"", 500), (b"   ", 500), (b"A\x00B", 501),
                                            (b"TOOLONGVERB x", 500), (b"R3TR x", 500),
                                            (b"\xff\xfe", 500)])
def test_bad_lines(line: bytes, code: int) -> None:
    r = parse_line(line)
    assert isinstance(r, BadLine) and r.code == code


def test_format_and_masking() -> None:
    assert Command("PASS", "secret").format() == b"PASS secret\r\n"
    assert Command("PASS", "secret").masked() == "PASS ****"
    assert Command("NOOP").format() == b"NOOP\r\n"
    with pytest.raises(ValueError):
        Command("RETR", "a\r\nDELE b").format()


def test_reader_splits_across_chunks_and_accepts_bare_lf() -> None:
    r = LineReader()
    assert r.feed(b"US") == []
    assert r.feed(b"ER a\r\nPASS b\nNO") == [Command("USER", "a"), Command("PASS", "b")]
    assert r.feed(b"OP\r\n") == [Command("NOOP")]


def test_reader_refuses_a_long_line_once_without_buffering_it() -> None:
    r = LineReader(max_line=100)
    ev = r.feed(b"USER " + b"a" * 200)
    assert len(ev) == 1 and isinstance(ev[0], BadLine) and "too long" in ev[0].reason
    assert r.feed(b"a" * 5000) == []
    assert len(r._buf) == 0
    assert r.feed(b"\r\nNOOP\r\n") == [Command("NOOP")]


def test_reader_strips_telnet_sequences_around_abor() -> None:
    r = LineReader()
    # IAC IP, IAC DM (Synch), then ABOR; IAC IAC is a literal 0xFF
    assert r.feed(b"\xff\xf4\xff\xf2ABOR\r\n") == [Command("ABOR")]
    assert r.feed(b"\xff\xfb\x01\xff\xfa\x18\x01\xff\xf0NOOP\r\n") == [Command("NOOP")]
    ev = r.feed(b"RETR a\xff\xffb\r\n")
    assert isinstance(ev[0], Command) and ev[0].arg.encode("utf-8", "surrogateescape") \
        == b"a\xffb"
    assert r.feed(b"\xff") == []  # IAC split across reads
    assert r.feed(b"\xf4NOOP\r\n") == [Command("NOOP")]
