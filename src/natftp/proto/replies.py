"""FTP replies: formatting (server side) and incremental parsing (client side).

A reply is a three-digit code and one or more lines of text. On the wire a single-line
reply is ``"230 Logged in.\\r\\n"``; a multi-line one opens with ``"211-"`` and closes
with a line that starts with the same code and a space (RFC 959 4.2). Lines in between
are sent with a leading space so that none can be mistaken for the closing line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_REPLY_LINE = 8192
MAX_REPLY_LINES = 10000


class ReplyError(ValueError):
    """A reply that does not follow RFC 959's format."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @classmethod
    def of(cls, code: int, *lines: str) -> Reply:
        """Build a reply; text with embedded newlines becomes several lines."""
        out: list[str] = []
        for line in lines or ("",):
            out.extend(line.splitlines() or [""])
        return cls(code, tuple(out))

    @property
    def text(self) -> str:
        """All lines joined with newlines (the continuation prefixes removed)."""
        return "\n".join(self.lines)

    @property
    def kind(self) -> int:
        """The first digit: 1 preliminary, 2 done, 3 more needed, 4 transient, 5 error."""
        return self.code // 100

    @property
    def ok(self) -> bool:
        return self.kind in (1, 2, 3)

    def format(self) -> bytes:
        """Encode for the wire; CR and LF inside a line are never emitted."""
        if not 100 <= self.code <= 599:
            raise ReplyError(f"reply code {self.code} out of range")
        clean = [line.replace("\r", " ").replace("\n", " ") for line in self.lines] or [""]
        if len(clean) == 1:
            return f"{self.code} {clean[0]}\r\n".encode("utf-8", "surrogateescape")
        parts = [f"{self.code}-{clean[0]}\r\n"]
        parts.extend(f" {line}\r\n" for line in clean[1:-1])
        parts.append(f"{self.code} {clean[-1]}\r\n")
        return "".join(parts).encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        return self.format().decode("utf-8", "replace").rstrip("\r\n")


def _code_of(line: str) -> int | None:
    if len(line) >= 3 and line[:3].isdigit() and (len(line) == 3 or line[3] in " -"):
        return int(line[:3])
    return None


class ReplyParser:
    """Incremental parser: ``feed(bytes)`` returns the replies completed so far.

    Tolerant of bare LF line ends and of servers that omit the leading space on
    continuation lines; strict on what would lose sync (a first line with no code).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._code: int | None = None
        self._lines: list[str] = []

    @property
    def pending(self) -> bool:
        """True while a multi-line reply (or a partial line) is incomplete."""
        return self._code is not None or bool(self._buf)

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        out: list[Reply] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_REPLY_LINE:
                    raise ReplyError(f"reply line longer than {MAX_REPLY_LINE} bytes")
                return out
            raw = bytes(self._buf[:nl]).rstrip(b"\r")
            del self._buf[: nl + 1]
            reply = self._line(raw.decode("utf-8", "surrogateescape"))
            if reply is not None:
                out.append(reply)

    def _line(self, line: str) -> Reply | None:
        code = _code_of(line)
        if self._code is None:
            if code is None:
                raise ReplyError(f"reply line without a code: {line[:80]!r}")
            if len(line) > 3 and line[3] == "-":
                self._code = code
                self._lines = [line[4:]]
                return None
            return Reply(code, (line[4:],))
        if code == self._code and (len(line) == 3 or line[3] == " "):
            self._lines.append(line[4:])
            reply = Reply(self._code, tuple(self._lines))
            self._code, self._lines = None, []
            return reply
        if len(self._lines) >= MAX_REPLY_LINES:
            raise ReplyError(f"multi-line reply longer than {MAX_REPLY_LINES} lines")
        self._lines.append(line[1:] if line.startswith(" ") else line)
        return None


def feat_reply(features: Iterable[str]) -> Reply:
    """``211-Features:`` / `` FEAT`` lines / ``211 End`` (RFC 2389)."""
    return Reply(211, ("Features:", *features, "End"))
