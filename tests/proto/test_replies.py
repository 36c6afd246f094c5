"""Reply formatting (single and multi-line) and incremental parsing."""

from __future__ import annotations

import pytest

from natftp.proto.replies import Reply, ReplyError, ReplyParser, feat_reply


def test_single_line_format() -> None:
    assert Reply.of(200, "OK.").format() == b"200 OK.\r\n"
    assert Reply.of(220).format() == b"220 \r\n"


def test_multi_line_format_prefixes_middle_lines_with_a_space() -> None:
    r = Reply(211, ("Features:", "MDTM", "211 looks like an end", "End"))
    assert r.format() == (b"211-Features:\r\n MDTM\r\n 211 looks like an end\r\n"
                          b"211 End\r\n")
    assert Reply.of(214, "a\nb").lines == ("a", "b")


def test_cr_lf_inside_a_line_is_never_emitted() -> None:
    r = Reply(550, ("bad\rname",))
    assert r.format() == b"550 bad name\r\n"


def test_code_range_and_kinds() -> None:
    with pytest.raises(ReplyError):
        Reply.of(99, "x").format()
    assert Reply.of(150, "").kind == 1 and Reply.of(150, "").ok
    assert not Reply.of(550, "").ok
    assert str(Reply.of(226, "done")) == "226 done"


def test_non_utf8_names_round_trip() -> None:
    name = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert Reply.of(257, f'"/{name}"').format() == b'257 "/caf\xe9"\r\n'


def test_feat_reply() -> None:
    assert feat_reply(["EPSV", "UTF8"]).format() == \
        b"211-Features:\r\n EPSV\r\n UTF8\r\n211 End\r\n"


def test_parser_incremental_and_multi_line() -> None:
    p = ReplyParser()
    assert p.feed(b"220 hel") == []
    assert p.pending
    assert p.feed(b"lo\r\n211-Feat") == [Reply(220, ("hello",))]
    assert p.feed(b"ures:\r\n EPSV\r\n211 End\r\n") == [Reply(211, ("Features:", "EPSV",
                                                                       "End"))]
    assert not p.pending


def test_parser_round_trips_formatted_replies() -> None:
    for r in (Reply.of(200, "x"), Reply(211, ("a", "b", "c")), feat_reply(["X"])):
        assert ReplyParser().feed(r.format()) == [r]


def test_parser_tolerates_bare_lf_and_missing_space() -> None:
    assert ReplyParser().feed(b"211-a\nb\n211 c\n") == [Reply(211, ("a", "b", "c"))]


def test_parser_refuses_a_line_without_a_code_and_overlong_lines() -> None:
    with pytest.raises(ReplyError):
        ReplyParser().feed(b"hello\r\n")
    with pytest.raises(ReplyError):
        ReplyParser().feed(b"2" * 9000)
