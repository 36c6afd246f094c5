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

The lines of one turn of the event loop are written together, by one ``os.write`` on
an ``O_APPEND`` descriptor at the start of the next turn (microseconds later): lines never
interleave or split, a busy server makes one system call for several transfers (the write
was most of the xferlog's cost on the small-file benchmark), and a server killed with -9
loses at most the lines of the turn it was in. :meth:`XferLog.reopen` (SIGUSR1, after
logrotate moved the file) and :meth:`XferLog.close` write what is pending first.
"""

from __future__ import annotations

import asyncio
import logging
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
        self._pending: list[str] = []

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
        pending = self._pending
        pending.append(line)
        if len(pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop running: write it now
                self.flush()

    def flush(self) -> None:
        """Write the pending lines, in one system call."""
        if self._pending:
            data = "".join(self._pending).encode("utf-8", "backslashreplace")
            lines = len(self._pending)
            self._pending.clear()
            try:
                logsetup.write_all(self.fd, data)
            except OSError as e:  # a full disk must not end the transfers that go on
                logging.getLogger("natftp.server").error(
                    "xferlog %s: %d line(s) not written: %s", self.path, lines,
                    e.strerror or e)

    def reopen(self) -> None:
        self.flush()  # they belong to the file logrotate moved away
        logsetup.reopen_log(self.fd, self.path)

    def close(self) -> None:
        self.flush()
        os.close(self.fd)
