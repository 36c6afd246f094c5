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
otherwise (tests, embedding, any other handler that would see the line) it is
``logger.log``.

``natftp serve``'s ``[log]`` (issue 20): :func:`setup` can write to a file instead of
stderr (opened ``O_APPEND``; :func:`reopen` after logrotate moved it, on SIGUSR1) and in
JSON lines (python-json-logger, imported only then); :func:`configure` changes level,
file and format of a running server (SIGHUP).
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
        write_all(self.fd, (line + "\n").encode("utf-8", "backslashreplace"))


def write_all(fd: int, data: bytes) -> None:
    """``data`` to ``fd``, looping on a short write."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def open_log(path: str | os.PathLike[str]) -> int:
    """A log file opened for appending (created 0640): every write lands at its end, so
    lines written at once never interleave."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


def reopen_log(fd: int, path: str | os.PathLike[str]) -> None:
    """Point ``fd`` at ``path`` afresh (logrotate renamed the old file): the new file is
    opened first and ``dup2``-ed over ``fd``, so no write ever finds it closed. Raises
    ``OSError`` (and ``fd`` keeps writing to the old file) if it cannot be opened."""
    new = open_log(path)
    try:
        os.dup2(new, fd)
    finally:
        os.close(new)


#: the handler and formatter setup() installed (None: setup() did not configure logging)
_handler: FdHandler | None = None
_formatter: _Formatter | None = None
#: the file setup()/configure() log to (None: stderr)
_path: str | None = None


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
            # a handler above this level (the status page's warning ring) never sees it
            if c.parent is not None and any(x.level <= level for x in c.handlers):
                return None
            if c.parent is None and (h not in c.handlers or any(
                    x is not h and x.level <= level for x in c.handlers)):
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


def setup(level: int | str, *, file: str | os.PathLike[str] | None = None,
          fmt: str = "text") -> None:
    """The root logger at ``level``, writing to stderr (as ``basicConfig`` would) or to
    ``file``; ``fmt`` "json" writes JSON lines. ``OSError`` if ``file`` cannot be opened."""
    global _handler, _formatter, _path
    root = logging.getLogger()
    if root.handlers and _handler is None:  # configured already (embedding, tests)
        root.setLevel(level)
        return
    if _handler is not None:
        configure(level, file=file, fmt=fmt)
        return
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    sys.stderr.flush()
    fd = sys.stderr.fileno() if file is None else open_log(file)
    h = FdHandler(fd)
    f = _Formatter(FORMAT)
    h.setFormatter(f if fmt == "text" else json_formatter())
    root.addHandler(h)
    root.setLevel(level)
    _handler, _formatter = h, f
    _path = None if file is None else os.fspath(file)


def configure(level: int | str, *, file: str | os.PathLike[str] | None = None,
              fmt: str = "text") -> None:
    """Change level, destination and format of setup()'s logging (SIGHUP). The new file
    is opened before anything changes: ``OSError`` leaves everything as it was."""
    global _path
    h = _handler
    root = logging.getLogger()
    if h is None:
        root.setLevel(level)
        return
    path = None if file is None else os.fspath(file)
    if path != _path:
        fd = sys.stderr.fileno() if path is None else open_log(path)
        old, h.fd = h.fd, fd
        if old != sys.stderr.fileno():
            os.close(old)
        _path = path
    want_json = fmt == "json"
    if want_json != (h.formatter is not _formatter):
        h.setFormatter(json_formatter() if want_json else _formatter)
    root.setLevel(level)


def reopen() -> None:
    """SIGUSR1: reopen the log file (after logrotate); nothing to do on stderr."""
    if _handler is not None and _path is not None:
        reopen_log(_handler.fd, _path)


def json_formatter() -> logging.Formatter:
    """JSON lines: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, and
    ``session`` for a session's line (its ``[sN]`` prefix, taken out of the message)."""
    from pythonjsonlogger.json import JsonFormatter

    class SessionJson(JsonFormatter):
        def process_log_record(self, log_data: dict[str, object]) -> dict[str, object]:
            msg = log_data.get("message")
            if isinstance(msg, str) and msg.startswith("[s"):
                sid, sep, rest = msg[1:].partition("] ")
                if sep and sid[1:].isdigit():
                    log_data["session"], log_data["message"] = sid, rest
            return log_data

    return SessionJson(["levelname", "name", "message"], timestamp="time",
                       rename_fields={"levelname": "level", "name": "logger"})
