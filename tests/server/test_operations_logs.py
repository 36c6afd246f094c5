"""Issue 20, logs: the xferlog, JSON lines, a log file reopened on SIGUSR1, passwords never
written anywhere, and the fail2ban filter checked by Debian's fail2ban-regex against the
log natftp wrote."""

from __future__ import annotations

import ftplib
import io
import json
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from support.servertools import PASSWORD, USER, Running, wait_for

REPO = Path(__file__).resolve().parents[2]
FILTER = REPO / "contrib" / "fail2ban" / "natftp.conf"
JAIL = REPO / "contrib" / "fail2ban" / "natftp.jail.conf"
SECRET = "Sup3r-s3cret-Pw!"


def text(p: Path) -> str:
    return p.read_text(errors="replace") if p.exists() else ""


def failed_login(r: Running, user: str, password: str) -> None:
    ftp = ftplib.FTP(timeout=20)
    ftp.connect("127.0.0.1", r.port)
    try:
        ftp.login(user, password)
    except ftplib.error_perm:
        pass
    else:
        raise AssertionError("the login should have failed")
    ftp.close()


def test_xferlog_has_one_wu_ftpd_line_per_file_transfer(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    xfer = tmp_path / "xferlog"
    r = natftp_server(args=["--xferlog", str(xfer), "--anonymous"])
    (r.root / "a file.bin").write_bytes(b"a" * 3000)
    ftp = ftplib.FTP(timeout=20)
    ftp.connect("127.0.0.1", r.port)
    ftp.login(USER, PASSWORD)
    ftp.retrbinary("RETR a file.bin", lambda b: None)
    ftp.storlines("STOR up.txt", io.BytesIO(b"line\n" * 10))
    ftp.retrlines("LIST", lambda line: None)  # a listing is no file transfer: no line
    # an upload cut off by ABOR is logged incomplete
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR cut.bin")
    conn.sendall(b"c" * 5000)
    ftp.abort()
    conn.close()
    ftp.quit()
    anon = ftplib.FTP(timeout=20)
    anon.connect("127.0.0.1", r.port)
    anon.login("anonymous", "someone@example.org")
    anon.retrbinary("RETR a file.bin", lambda b: None)
    anon.quit()
    wait_for(lambda: text(xfer).count("\n") >= 4, "four xferlog lines")
    lines = text(xfer).splitlines()
    assert len(lines) == 4, lines
    date = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}"
    root = str(r.root)
    assert re.fullmatch(date + rf" \d+ 127\.0\.0\.1 3000 {root}/a_file\.bin b _ o r {USER} "
                        r"ftp 0 \* c", lines[0]), lines[0]
    assert re.fullmatch(date + rf" \d+ 127\.0\.0\.1 60 {root}/up\.txt a _ i r {USER} ftp 0 "
                        r"\* c", lines[1]), lines[1]
    assert re.fullmatch(date + rf" \d+ 127\.0\.0\.1 \d+ {root}/cut\.bin b _ i r {USER} ftp 0 "
                        r"\* i", lines[2]), lines[2]
    assert re.fullmatch(date + rf" \d+ 127\.0\.0\.1 3000 {root}/a_file\.bin b _ o a "
                        r"anonymous ftp 0 \* c", lines[3]), lines[3]
    assert all(len(x.split()) == 18 for x in lines)
    assert "someone@example.org" not in text(xfer) + r.log


def test_json_log_file_and_no_password_anywhere(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    log = tmp_path / "natftp.log"
    xfer = tmp_path / "xferlog"
    r = natftp_server(args=["--log-file", str(log), "--log-format", "json", "-v",
                            "--xferlog", str(xfer)])
    failed_login(r, USER, SECRET)
    failed_login(r, "nobody", SECRET)
    ftp = ftplib.FTP(timeout=20)
    ftp.connect("127.0.0.1", r.port)
    ftp.login(USER, PASSWORD)
    ftp.storbinary("STOR x.bin", io.BytesIO(b"x"))
    ftp.quit()
    wait_for(lambda: "closed (alice)" in text(log), "the session's last line")
    records = [json.loads(line) for line in text(log).splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(x) for x in records)
    fails = [x for x in records if "login failed" in x["message"]]
    assert len(fails) == 2 and all(x["level"] == "WARNING" for x in fails)
    assert all(re.fullmatch(r"s\d+", x["session"]) for x in fails)
    assert any(x["message"] == "<- PASS ****" for x in records), "debug lines, masked"
    # neither password is in any file natftp wrote, nor on its stdout/stderr
    everything = text(log) + text(xfer) + r.log
    assert SECRET not in everything and PASSWORD not in everything
    assert "login failed" not in r.log  # the log went to the file, not stderr


def test_sigusr1_reopens_the_log_and_the_xferlog_after_logrotate(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log, xfer = logs / "natftp.log", logs / "xferlog"
    r = natftp_server(args=["--log-file", str(log), "--xferlog", str(xfer)])
    (r.root / "f.bin").write_bytes(b"f" * 10)

    def transfer() -> None:
        ftp = ftplib.FTP(timeout=20)
        ftp.connect("127.0.0.1", r.port)
        ftp.login(USER, PASSWORD)
        ftp.retrbinary("RETR f.bin", lambda b: None)
        ftp.quit()

    transfer()
    wait_for(lambda: text(xfer), "the first xferlog line")
    # what logrotate does: rename, then tell the server (postrotate)
    log.rename(logs / "natftp.log.1")
    xfer.rename(logs / "xferlog.1")
    r.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "log files reopened" in text(log), "the new log file")
    transfer()
    wait_for(lambda: text(xfer), "the xferlog line in the new file")
    assert "RETR /f.bin" in text(log) and "RETR /f.bin" in text(logs / "natftp.log.1")
    assert len(text(xfer).splitlines()) == 1
    assert len(text(logs / "xferlog.1").splitlines()) == 1
    assert oct(log.stat().st_mode & 0o777) == "0o640"
    # the directory gone: the reopen fails, is logged, and the old files go on
    moved = tmp_path / "moved"
    logs.rename(moved)
    r.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "cannot reopen the log files" in text(moved / "natftp.log"),
             "the error in the still-open log")
    transfer()
    wait_for(lambda: len(text(moved / "xferlog").splitlines()) == 2, "a line in the old file")
    assert r.proc.poll() is None


def _fail2ban_regex(log: Path) -> list[str]:
    exe = shutil.which("fail2ban-regex")
    assert exe, "fail2ban-regex is missing: run scripts/setup-system.sh"
    out = subprocess.run([exe, "-o", "<ip>", str(log), str(FILTER)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.split()


def test_fail2ban_filter_finds_the_failed_logins_natftp_logged(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    for fmt in ("text", "json"):
        log = tmp_path / f"natftp-{fmt}.log"
        r = natftp_server(args=["--log-file", str(log), "--log-format", fmt])
        failed_login(r, USER, "wrong")
        failed_login(r, "nobody", "wrong")
        # a hostile user name that carries another address must not get it banned
        failed_login(r, "x' from 203.0.113.9 (wrong password; attempt 1 of 3)", "wrong")
        ok = ftplib.FTP(timeout=20)
        ok.connect("127.0.0.1", r.port)
        ok.login(USER, PASSWORD)
        ok.quit()
        wait_for(lambda log=log: text(log).count("login failed") == 3 and  # type: ignore[misc]
                 "closed (alice)" in text(log), "the log lines")
        assert _fail2ban_regex(log) == ["127.0.0.1"] * 3, (fmt, text(log))
        r.stop()


def test_fail2ban_counts_failed_logins_not_natftp_s_own_ban_lines(
        natftp_server: Callable[..., Running], tmp_path: Path) -> None:
    """natftp's ban line and the refusals of a banned address are verdicts, not failed
    logins: fail2ban-regex matches the two failures and neither of them."""
    for fmt in ("text", "json"):
        log = tmp_path / f"natftp-ban-{fmt}.log"
        r = natftp_server(args=["--log-file", str(log), "--log-format", fmt],
                          config="[timeouts]\nlogin_failure_delay = 0\n"
                                 "[limits]\nban_after = 2\n")
        failed_login(r, USER, "wrong")
        ftp = ftplib.FTP(timeout=20)
        ftp.connect("127.0.0.1", r.port)
        with pytest.raises(ftplib.error_temp, match="421 .*limits.ban_after"):
            ftp.login(USER, "wrong again")  # the second failure starts the ban
        ftp.close()
        for _ in range(2):
            refused = ftplib.FTP(timeout=20)
            with pytest.raises(ftplib.error_temp, match="421 Address 127.0.0.1 is refused"):
                refused.connect("127.0.0.1", r.port)
            refused.close()
        wait_for(lambda log=log: text(log).count("login failed") == 2 and  # type: ignore[misc]
                 text(log).count("connection from 127.0.0.1 refused") == 2, "the log lines")
        assert "ban 127.0.0.1: 2 failed logins within 600 s (limits.ban_after = 2)" in (
            text(log))
        assert _fail2ban_regex(log) == ["127.0.0.1"] * 2, (fmt, text(log))
        r.stop()


def test_fail2ban_jail_example_passes_fail2ban_client_test(tmp_path: Path) -> None:
    """The jail and filter as an administrator installs them, in a copy of Debian's
    /etc/fail2ban (its sshd jail off: this machine has no auth.log)."""
    conf = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    shutil.copy(FILTER, conf / "filter.d" / "natftp.conf")
    log = tmp_path / "natftp.log"
    log.write_text("")
    (conf / "jail.d" / "natftp.local").write_text(
        JAIL.read_text().replace("/var/log/natftp/natftp.log", str(log)))
    for f in (conf / "jail.d").iterdir():
        if f.name != "natftp.local":
            f.unlink()
    (conf / "jail.d" / "no-sshd.local").write_text("[sshd]\nenabled = false\n")
    out = subprocess.run(["fail2ban-client", "-c", str(conf), "--test"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "configuration test is successful" in out.stdout, (
        out.stdout + out.stderr)
    dump = subprocess.run(["fail2ban-client", "-c", str(conf), "-d"], capture_output=True,
                          text=True, timeout=120)
    assert "['add', 'natftp', 'auto']" in dump.stdout
    assert f"['set', 'natftp', 'addlogpath', '{log}'" in dump.stdout
    # and it is not vacuous: a jail naming a filter that does not exist fails
    (conf / "jail.d" / "natftp.local").write_text(
        (conf / "jail.d" / "natftp.local").read_text().replace("filter   = natftp",
                                                               "filter   = natftpp"))
    bad = subprocess.run(["fail2ban-client", "-c", str(conf), "--test"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0


def test_an_xferlog_that_cannot_be_written_logs_the_loss_and_keeps_serving(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import logging
    import os

    from natftp.server.xferlog import XferLog

    x = XferLog(tmp_path / "xferlog")
    full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC, as on a full disk
    os.dup2(full, x.fd)
    os.close(full)

    async def two_transfers() -> None:
        x.write(1.0, "192.0.2.7", 10, "/srv/a", True, False, "alice", True)
        x.write(1.0, "192.0.2.7", 20, "/srv/b", True, True, "alice", True)
        await asyncio.sleep(0)  # the lines of this turn are written at the next
        await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR, logger="natftp.server"):
        asyncio.run(two_transfers())  # the transfers' code sees no exception
        x.close()
    lost = [r.getMessage() for r in caplog.records]
    assert lost == [f"xferlog {tmp_path / 'xferlog'}: 2 line(s) not written: "
                    "No space left on device"], lost
