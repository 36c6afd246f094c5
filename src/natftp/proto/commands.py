"""Command lines: framing (with a hard line limit), Telnet IAC handling, parsing.

The server feeds raw control-connection bytes into :class:`LineReader` and gets
:class:`Command` or :class:`BadLine` events back. A line over the limit is reported once
and discarded as it streams in, never buffered whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

MAX_LINE = 4096

IAC = 0xFF
_DONT, _DO, _WONT, _WILL = 0xFE, 0xFD, 0xFC, 0xFB
_SB, _SE = 0xFA, 0xF0


class Command(NamedTuple):
    """One command: the verb upper-cased, the argument verbatim (spaces kept).

    A named tuple rather than a frozen dataclass: the server makes one per command line,
    and a tuple is built in a third of the time (frozen dataclasses set each field
    through ``object.__setattr__``)."""

    name: str
    arg: str = ""

    def format(self) -> bytes:
        """Encode for the wire (client side); CR/LF in the argument are refused."""
        if "\r" in self.arg or "\n" in self.arg:
            raise ValueError("command argument must not contain CR or LF")
        line = f"{self.name} {self.arg}" if self.arg else self.name
        return line.encode("utf-8", "surrogateescape") + b"\r\n"

    def masked(self) -> str:
        """For logs and -v output: the password of PASS is never shown."""
        if self.name == "PASS":
            return "PASS ****"
        return f"{self.name} {self.arg}" if self.arg else self.name


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that cannot become a command; ``reason`` is fit for a 500 reply."""

    reason: str
    code: int = 500


def parse_line(line: bytes) -> Command | BadLine:
    """Parse one line (CRLF already removed)."""
    if b"\0" in line:
        return BadLine("Command contains a NUL byte.", 501)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        # Some clients still send Latin-1 file names; keep the bytes round-trippable.
        text = line.decode("utf-8", "surrogateescape")
    if not text.strip():
        return BadLine("Empty command line.")
    verb, sep, arg = text.lstrip(" ").partition(" ")
    if not verb.isascii() or not verb.isalpha() or len(verb) > 5:
        shown = verb[:20].encode("ascii", "backslashreplace").decode()
        return BadLine(f"Syntax error: {shown!r} is not an FTP command.")
    return Command(verb.upper(), arg if sep else "")


class LineReader:
    """Split a byte stream into command lines, honouring a maximum line length.

    Telnet option negotiation (IAC WILL/WONT/DO/DONT x, IAC SB ... IAC SE) and the
    IAC IP / IAC DM that clients send before ABOR are removed; IAC IAC is a literal 0xFF.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False
        self._iac_state = 0  # 0 normal, 1 after IAC, 2 after WILL/WONT/DO/DONT, 3 in SB

    @property
    def partial(self) -> bool:
        """A line has begun and not ended yet (bytes kept, or an over-long line being
        discarded): the server gives it ``timeouts.line`` to end (slowloris)."""
        return bool(self._buf) or self._discarding

    def _strip_telnet(self, data: bytes) -> bytes:
        if IAC not in data and self._iac_state == 0:
            return data
        out = bytearray()
        for b in data:
            st = self._iac_state
            if st == 0:
                if b == IAC:
                    self._iac_state = 1
                else:
                    out.append(b)
            elif st == 1:
                if b == IAC:
                    out.append(IAC)
                    self._iac_state = 0
                elif b in (_WILL, _WONT, _DO, _DONT):
                    self._iac_state = 2
                elif b == _SB:
                    self._iac_state = 3
                else:
                    self._iac_state = 0  # IP, DM, AO, AYT, ...: drop
            elif st == 2:
                self._iac_state = 0
            elif b == IAC:
                self._iac_state = 4  # in SB, saw IAC
            elif st == 4:
                self._iac_state = 0 if b == _SE else 3
        return bytes(out)

    def feed(self, data: bytes) -> list[Command | BadLine]:
        data = self._strip_telnet(data)
        events: list[Command | BadLine] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                rest = data[start:]
                if self._discarding:
                    return events
                if len(self._buf) + len(rest) > self.max_line:
                    self._buf.clear()
                    self._discarding = True
                    events.append(BadLine(f"Command line too long (limit {self.max_line} "
                                          "bytes); line discarded."))
                else:
                    self._buf += rest
                return events
            chunk = data[start:nl]
            start = nl + 1
            if self._discarding:
                self._discarding = False
                continue
            if len(self._buf) + len(chunk) > self.max_line:
                self._buf.clear()
                events.append(BadLine(f"Command line too long (limit {self.max_line} "
                                      "bytes); line discarded."))
                continue
            line = bytes(self._buf + chunk) if self._buf else bytes(chunk)
            self._buf.clear()
            events.append(parse_line(line.rstrip(b"\r")))
