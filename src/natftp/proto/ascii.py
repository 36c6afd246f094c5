"""TYPE A: line ends between the file on disk and NVT-ASCII on the wire (RFC 959 §3.1.1.1).

On the wire, TYPE A is NVT-ASCII: every line ends with CR LF, and RFC 854 allows a CR
only before LF (or NUL). On disk the server keeps Unix text: lines end with LF. The two
converters here are the whole rule, sans-IO: they take chunks as the data path reads them
and carry their one byte of state across chunks, so a CR LF split between two reads is
never doubled or lost.

- :class:`ToWire` (RETR): an LF gets a CR in front unless the byte before it already is a
  CR. A file that already has CR LF line ends goes out unchanged (``ab\\r\\ncd\\r\\n`` stays
  8 octets; adding a CR blindly would send ``ab\\r\\r\\n``, which a text-mode client saves
  with a stray CR on every line). Any other CR is sent as it is (as vsftpd and pyftpdlib
  do; strict NVT would send CR NUL, which clients would then save as two bytes).
- :class:`FromWire` (STOR, APPE): CR LF becomes LF; any other CR is kept (a lone CR, the
  first CR of CR CR LF), and a CR at the end of a chunk waits for the next one.

Offsets: RFC 3659 counts SIZE and REST in octets of the transfer, i.e. of the wire form
in TYPE A. ``ToWire(skip=n)`` drops the first ``n`` wire octets (REST ``n`` before RETR),
starting from the first byte of the file; ``ToWire.count`` gives the wire size of a chunk
without building it (SIZE).
"""

from __future__ import annotations

_CR = b"\r"
_LF = b"\n"
_CRLF = b"\r\n"


class ToWire:
    """Disk -> wire (RETR in TYPE A): LF -> CR LF, unless the LF already follows a CR.

    Feed the file from its first byte; ``skip`` wire octets are dropped first (a REST
    offset in TYPE A), which may end between the CR and the LF of a line end.
    """

    __slots__ = ("_cr", "_skip")

    def __init__(self, skip: int = 0) -> None:
        if skip < 0:
            raise ValueError("skip must not be negative")
        #: the last byte fed was a CR (an LF first in the next chunk needs no CR)
        self._cr = False
        self._skip = skip

    @property
    def skipping(self) -> int:
        """Wire octets still to drop (non-zero at the end: the offset was past the end)."""
        return self._skip

    def _wire_len(self, chunk: bytes) -> int:
        n = len(chunk) + chunk.count(_LF) - chunk.count(_CRLF)
        if self._cr and chunk[:1] == _LF:
            n -= 1
        return n

    def _convert(self, chunk: bytes) -> bytes:
        if _LF not in chunk:
            return chunk
        # CR LF -> LF -> CR LF leaves them as they were; every other LF gains its CR
        out = chunk.replace(_CRLF, _LF).replace(_LF, _CRLF)
        if self._cr and chunk[:1] == _LF:
            out = out[1:]  # its CR is the previous chunk's last byte
        return out

    def count(self, chunk: bytes) -> int:
        """The number of wire octets ``chunk`` becomes (state advances as in ``feed``)."""
        n = self._wire_len(chunk)
        if chunk:
            self._cr = chunk[-1:] == _CR
        return n

    def feed(self, chunk: bytes) -> bytes:
        """The wire octets for the next chunk of the file (after any left to skip)."""
        if not chunk:
            return b""
        if self._skip:
            n = self._wire_len(chunk)
            if n <= self._skip:
                self._skip -= n
                self._cr = chunk[-1:] == _CR
                return b""
            out = self._convert(chunk)[self._skip:]
            self._skip = 0
        else:
            out = self._convert(chunk)
        self._cr = chunk[-1:] == _CR
        return out


class FromWire:
    """Wire -> disk (STOR/APPE in TYPE A): CR LF -> LF; every other CR is kept."""

    __slots__ = ("_cr",)

    def __init__(self) -> None:
        #: the last chunk ended with a CR, not written yet (it may be half of a CR LF)
        self._cr = False

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to write for the next chunk received."""
        if self._cr:
            chunk = _CR + chunk
            self._cr = False
        if chunk[-1:] == _CR:
            chunk = chunk[:-1]
            self._cr = True
        return chunk.replace(_CRLF, _LF)

    def end(self) -> bytes:
        """What is left when the data ends: a final CR that no LF followed."""
        out, self._cr = (_CR if self._cr else b""), False
        return out

