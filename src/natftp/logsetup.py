"""Logging for the long-running commands (``natftp serve``, ``natftp gateway``): the
same lines as ``logging.basicConfig`` with ``%(asctime)s %(levelname)s %(name)s
%(message)s`` on stderr, at about half the cost per line.

A busy server logs one line per transfer (4,000+ a second in the small-file benchmark),
and the standard path spent ~9 us on each: the caller's frame lookup, thread and
process names, ``strftime`` per record, and a text-stream write plus flush. Here:

- the caller lookup is off (``logging._srcfile = None``, the standard library's own
  switch for it) and so are thread/process names: the format uses none of them;
- the date part of ``asctime`` is formatted once a second;
- each line is one ``os.write`` of the encoded text to fd 2, at once: a line is in the
  log before the reply that follows it is sent (nothing buffered, nothing lost at exit).

Measured: 8.9 -> 4.9 us per transfer line (timeit, the line natftp logs per RETR).

:func:`log` goes further for the server's per-session lines: while the configuration is
the one :func:`setup` made (its handler alone on the root, no filter, handler or
disabled logger on the way), it formats the same line itself and writes it, without a
``LogRecord`` or the handler chain (~12 -> ~3 us a line on the benchmark machine);
otherwise (tests, embedding, any other handler) it is ``logger.log``.
"""

from __future__ import annotations

import logging
import os
import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _Formatter(logging.Formatter):
    """``asctime`` as the default (``2026-12-02 04:26:31,771``), the seconds cached."""

    _sec = -1
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return f"{self._date(int(record.created))},{int(record.msecs):03d}"

    def _date(self, sec: int) -> str:
        if sec != self._sec:
            self._text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(sec))
            self._sec = sec
        return self._text

    def line(self, level: int, name: str, text: str) -> str:
        """What ``format()`` gives for a record of ``level`` from logger ``name`` with
        the message ``text``, made now (``FORMAT``, no exception)."""
        t = time.time()
        sec = int(t)
        return (f"{self._date(sec)},{int((t - sec) * 1000):03d} "
                f"{logging.getLevelName(level)} {name} {text}")


class FdHandler(logging.Handler):
    """Each record: one ``os.write`` (looped on a short write) to a file descriptor."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:
            self.handleError(record)

    def write(self, line: str) -> None:
        view = memoryview((line + "\n").encode("utf-8", "backslashreplace"))
        while view:
            view = view[os.write(self.fd, view):]


#: the handler and formatter setup() installed (None: setup() did not configure logging)
_handler: FdHandler | None = None
_formatter: _Formatter | None = None


def _direct(logger: logging.Logger, level: int) -> _Formatter | None:
    """The formatter to write ``logger``'s line with directly, or None when anything
    but setup()'s own configuration could see the record."""
    h, f = _handler, _formatter
    if h is None or f is None or h.formatter is not f or h.filters or h.level > level:
        return None
    c: logging.Logger | None = logger
    while c is not None:
        if c.filters or c.disabled:
            return None
        if c.handlers:
            if c.parent is not None or len(c.handlers) != 1 or c.handlers[0] is not h:
                return None
        elif not c.propagate:
            return None
        c = c.parent
    return f


def log(logger: logging.Logger, level: int, msg: str, *args: object) -> None:
    """``logger.log(level, msg, *args)``: the same line, written directly while setup()'s
    configuration is the only one (see the module's text)."""
    if not logger.isEnabledFor(level):
        return
    f, h = _direct(logger, level), _handler
    if f is None or h is None:
        logger.log(level, msg, *args)
        return
    try:
        text = msg % args if args else msg
        h.write(f.line(level, logger.name, text))
    except Exception:
        logger.log(level, msg, *args)  # logging reports a bad format its own way


def setup(level: int | str) -> None:
    """The root logger at ``level``, writing to stderr (as ``basicConfig`` would)."""
    root = logging.getLogger()
    if root.handlers:  # configured already (embedding, tests): leave it alone
        root.setLevel(level)
        return
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _handler, _formatter
    sys.stderr.flush()
    h = FdHandler(sys.stderr.fileno())
    f = _Formatter(FORMAT)
    h.setFormatter(f)
    root.addHandler(h)
    root.setLevel(level)
    _handler, _formatter = h, f
