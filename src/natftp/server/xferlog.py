"""The transfer log in wu-ftpd's xferlog format (``[log] xferlog = PATH``), the line that
log analysers (webalizer, AWStats, xferstats) and ProFTPD/vsftpd users' tooling read.

One line per file transfer, downloads and uploads, complete or not (listings are not
file transfers and are not logged here)::

    Thu Dec  3 18:25:42 2026 1 127.0.0.1 4096 /srv/ftp/pub/a.txt b _ o r alice ftp 0 * c

current time (local, ctime style), seconds taken (rounded, at least 1: analysers divide
by it), client address, bytes moved, the file's real path (spaces and control characters
as ``_``, as xferlog(5) says, so every field stays one word and a hostile name cannot
forge a line), ``a``/``b`` (TYPE), ``_`` (no special action), ``o``/``i`` (out/in),
``a``/``r`` (anonymous or real user), the user (``anonymous`` for anonymous: the
"password" anonymous users give is never written), ``ftp``, ``0`` (no RFC 931),
``*``, and ``c``/``i`` (complete or incomplete).

Each line is one ``os.write`` on an ``O_APPEND`` descriptor: lines of concurrent
transfers never interleave, and :meth:`XferLog.reopen` (SIGUSR1, after logrotate moved
the file) swaps the descriptor in place.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from natftp import logsetup

_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")


class XferLog:
    """An open xferlog file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = logsetup.open_log(path)
        self._sec = -1
        self._date = ""

    def write(self, seconds: float, host: str, nbytes: int, path: str, binary: bool,
              incoming: bool, user: str, complete: bool) -> None:
        now = int(time.time())
        if now != self._sec:
            self._date = time.asctime(time.localtime(now))
            self._sec = now
        anonymous = user == "anonymous"
        line = (f"{self._date} {max(1, round(seconds))} {host} {nbytes} "
                f"{_UNSAFE.sub('_', path)} {'b' if binary else 'a'} _ "
                f"{'i' if incoming else 'o'} {'a' if anonymous else 'r'} "
                f"{_UNSAFE.sub('_', user) or '-'} ftp 0 * {'c' if complete else 'i'}\n")
        logsetup.write_all(self.fd, line.encode("utf-8", "backslashreplace"))

    def reopen(self) -> None:
        logsetup.reopen_log(self.fd, self.path)

    def close(self) -> None:
        os.close(self.fd)
