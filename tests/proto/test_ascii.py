"""TYPE A line-end conversion (proto/ascii.py): tables, every chunk split, REST offsets."""

from __future__ import annotations

import pytest

from natftp.proto.ascii import FromWire, ToWire

#: file on disk -> octets on the wire in TYPE A
TO_WIRE = [
    (b"", b""),
    (b"ab\ncd\n", b"ab\r\ncd\r\n"),
    (b"ab\r\ncd\r\n", b"ab\r\ncd\r\n"),  # already CR LF: unchanged (issue 16, defect 1)
    (b"ab\ncd\nef\n", b"ab\r\ncd\r\nef\r\n"),
    (b"\n\n", b"\r\n\r\n"),
    (b"a\rb", b"a\rb"),  # a lone CR goes as it is
    (b"a\r\r\nb", b"a\r\r\nb"),  # CR CR LF: the LF already follows a CR
    (b"mixed\r\nunix\nend", b"mixed\r\nunix\r\nend"),
    (b"\r", b"\r"),
    (b"\n", b"\r\n"),
    (b"\r\n", b"\r\n"),
    (b"no line end", b"no line end"),
]

#: octets on the wire in TYPE A -> file on disk
FROM_WIRE = [
    (b"", b""),
    (b"ab\r\ncd\r\n", b"ab\ncd\n"),
    (b"ab\ncd", b"ab\ncd"),  # a bare LF (not NVT, but sent) stays an LF
    (b"a\rb", b"a\rb"),  # a lone CR is kept
    (b"a\r\r\nb", b"a\r\nb"),  # CR CR LF: a lone CR, then a line end
    (b"end\r", b"end\r"),  # a CR at the very end is kept
    (b"\r\r", b"\r\r"),
    (b"\r\n\r\n", b"\n\n"),
]


def splits(data: bytes) -> list[list[bytes]]:
    """``data`` whole, in single bytes, and cut at every position once and twice."""
    out = [[data], [bytes([b]) for b in data]]
    for i in range(len(data) + 1):
        out.append([data[:i], data[i:]])
        for j in range(i, len(data) + 1):
            out.append([data[:i], data[i:j], data[j:]])
    return out


def to_wire(chunks: list[bytes], skip: int = 0) -> bytes:
    enc = ToWire(skip)
    return b"".join(enc.feed(c) for c in chunks)


def from_wire(chunks: list[bytes]) -> bytes:
    dec = FromWire()
    return b"".join(dec.feed(c) for c in chunks) + dec.end()


@pytest.mark.parametrize(("disk", "wire"), TO_WIRE)
def test_to_wire_adds_a_cr_only_where_none_is(disk: bytes, wire: bytes) -> None:
    for chunks in splits(disk):
        assert to_wire(chunks) == wire, chunks


@pytest.mark.parametrize(("disk", "wire"), TO_WIRE)
def test_count_is_the_wire_size_whatever_the_chunks(disk: bytes, wire: bytes) -> None:
    for chunks in splits(disk):
        enc = ToWire()
        assert sum(enc.count(c) for c in chunks) == len(wire), chunks


@pytest.mark.parametrize(("disk", "wire"), TO_WIRE)
def test_skip_drops_exactly_that_many_wire_octets(disk: bytes, wire: bytes) -> None:
    # REST n in TYPE A counts wire octets: the rest of the transfer is wire[n:], also when
    # n falls between the CR and the LF of a line end
    for n in range(len(wire) + 1):
        for chunks in splits(disk)[:len(disk) + 3]:
            assert to_wire(chunks, n) == wire[n:], (n, chunks)


def test_skip_past_the_end_is_left_over() -> None:
    enc = ToWire(20)
    assert enc.feed(b"ab\ncd\nef\n") == b""
    assert enc.skipping == 8  # 12 wire octets: the offset was 8 past the end


def test_issue_16_examples() -> None:
    assert to_wire([b"ab\r\ncd\r\n"]) == b"ab\r\ncd\r\n"  # 8 octets, not 10
    enc = ToWire()
    assert enc.count(b"ab\ncd\nef\n") == 12  # SIZE in TYPE A: 12, not 9 on disk
    assert to_wire([b"ab\ncd\nef\n"], 4) == b"cd\r\nef\r\n"  # REST 4, not "d\r\nef\r\n"


def test_negative_skip_is_refused() -> None:
    with pytest.raises(ValueError):
        ToWire(-1)


@pytest.mark.parametrize(("wire", "disk"), FROM_WIRE)
def test_from_wire_turns_cr_lf_into_lf_and_keeps_other_crs(wire: bytes, disk: bytes) -> None:
    for chunks in splits(wire):
        assert from_wire(chunks) == disk, chunks


@pytest.mark.parametrize(("disk", "wire"), [(d, w) for d, w in TO_WIRE if b"\r" not in d])
def test_unix_text_round_trips(disk: bytes, wire: bytes) -> None:
    assert from_wire([to_wire([disk])]) == disk
