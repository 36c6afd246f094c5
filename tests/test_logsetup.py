"""natftp.logsetup: the server's log lines, and the direct path that must write exactly
what the logging module would."""

from __future__ import annotations

import re
import subprocess
import sys

SCRIPT = r"""
import logging, sys
from natftp import logsetup
logsetup.setup("INFO")
lg = logging.getLogger("natftp.server")
msg, args = "[%s] %s %s: %d bytes in %.2f s%s", ("s1", "RETR", "/\u00e9 x.bin", 4096, 0.5, "")
lg.log(logging.INFO, msg, *args)          # the logging module's line
logsetup.log(lg, logging.INFO, msg, *args)  # the direct path's
logsetup.log(lg, logging.WARNING, "[%s] refused %d", "s2", 550)
logsetup.log(lg, logging.DEBUG, "[%s] below the level: not written", "s3")
logsetup.log(lg, logging.INFO, "[%s] bad format %d", "s4")  # logging reports it, no raise
if sys.argv[1] == "extra":
    class Keep(logging.Handler):
        def emit(self, record):
            print("handler saw:", record.getMessage(), flush=True)
    lg.addHandler(Keep())
    logsetup.log(lg, logging.INFO, "[%s] seen by the added handler", "s5")
    lg.handlers.clear()
    lg.addFilter(lambda r: False)
    logsetup.log(lg, logging.INFO, "[%s] dropped by the filter", "s6")
"""

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def run(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, timeout=60, encoding="utf-8")


def test_direct_lines_are_the_logging_modules_lines() -> None:
    r = run("plain")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert all(STAMP.match(x) for x in lines[:3]), lines
    body = [STAMP.sub("", x) for x in lines]
    assert body[0] == "INFO natftp.server [s1] RETR /\u00e9 x.bin: 4096 bytes in 0.50 s"
    assert body[1] == body[0]
    assert body[2] == "WARNING natftp.server [s2] refused 550"
    assert "below the level" not in r.stderr
    # a bad format string goes to logging, which reports it instead of raising
    assert "--- Logging error ---" in r.stderr and "bad format" in r.stderr


def test_any_other_handler_or_filter_gets_the_record() -> None:
    r = run("extra")
    assert r.returncode == 0, r.stderr
    assert "handler saw: [s5] seen by the added handler" in r.stdout
    assert "INFO natftp.server [s5] seen by the added handler" in r.stderr
    assert "dropped by the filter" not in r.stderr
