"""Issue 21 item 1: no file-system operation can be steered outside the home by swapping a
path component for a symlink while the server works on it.

A separate process (fsrace.py) exchanges two entries of the tree as fast as it can while
a real client (Python's ftplib, which sends PASV before each transfer) loops commands for
a bounded time. The tree always holds a name that is, at each instant, either a real
entry inside the home or a symlink to the same kind of entry outside it. A checked path
that is then opened by name loses this race in a fraction of the tries (on the old code,
136 of 22,976 RETRs returned the outside file in 15 s); opening from directory fds, one
component at a time and never following a link the check did not see, cannot lose it.
"""

from __future__ import annotations

import ftplib
import io
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from fsrace import Swapper

from support.servertools import Running

#: how long each race runs (the swapper's lifetime; the client loops while it runs)
RACE_SECONDS = 10.0
SECRET = b"SECRET outside the home " + b"!" * 7777


def _client(r: Running) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect(r.host, r.port, timeout=30)
    ftp.login(r.user, r.password)
    ftp.voidcmd("TYPE I")
    return ftp


def _outside(r: Running) -> Path:
    out = r.root.parent / "outside"
    out.mkdir()
    return out


def _race(r: Running, a: Path, b: Path, step: Callable[[ftplib.FTP, int], None]) -> int:
    """Run ``step(ftp, n)`` in a loop while another process exchanges ``a`` and ``b``
    for RACE_SECONDS; returns the number of exchanges."""
    ftp = _client(r)
    swapper = Swapper(a, b, RACE_SECONDS)
    try:
        n = 0
        while swapper.proc.poll() is None:
            n += 1
            step(ftp, n)
        return swapper.stop()
    finally:
        swapper.kill()
        ftp.close()


def _counting(seen: Counter[str], label: str, fn: Callable[[], object]) -> object:
    """``fn()``; its outcome counted in ``seen`` as "LABEL ok" or "LABEL <code>"."""
    try:
        out = fn()
    except (ftplib.error_perm, ftplib.error_temp) as e:
        seen[f"{label} {str(e)[:3]}"] += 1
        return None
    seen[f"{label} ok"] += 1
    return out


def test_retr_while_a_file_and_a_symlink_to_an_outside_file_swap(server: Running) -> None:
    outside = _outside(server)
    (outside / "secret.txt").write_bytes(SECRET)
    (server.root / "race").write_bytes(b"inside")
    # absolute target: refused however it is reached
    os.symlink(outside / "secret.txt", server.root / "race-alt")
    seen: Counter[str] = Counter()
    got: list[bytes] = []

    def step(ftp: ftplib.FTP, n: int) -> None:
        buf = io.BytesIO()
        if _counting(seen, "RETR", lambda: ftp.retrbinary("RETR race", buf.write)):
            got.append(buf.getvalue())

    swaps = _race(server, server.root / "race", server.root / "race-alt", step)
    leaked = sum(b"SECRET" in g for g in got)
    assert leaked == 0, f"{leaked} RETRs returned the outside file ({dict(seen)})"
    # the race really ran: both states were met, and nothing else happened
    assert swaps > 1000, swaps
    assert set(got) == {b"inside"}
    assert seen["RETR ok"] > 10 and seen["RETR 550"] > 10, dict(seen)
    assert set(seen) == {"RETR ok", "RETR 550"}, dict(seen)
    assert "internal server error" not in server.log


def test_stor_while_a_directory_and_a_symlink_to_an_outside_directory_swap(
        server: Running) -> None:
    outside = _outside(server)
    (server.root / "racedir").mkdir()
    os.symlink("../outside", server.root / "racelink")  # relative target this time
    seen: Counter[str] = Counter()

    def step(ftp: ftplib.FTP, n: int) -> None:
        _counting(seen, "STOR", lambda: ftp.storbinary(f"STOR racedir/up{n}.txt",
                                                       io.BytesIO(b"upload %d" % n)))

    _race(server, server.root / "racedir", server.root / "racelink", step)
    escaped = sorted(os.listdir(outside))
    assert escaped == [], f"{len(escaped)} files written outside the home: {escaped[:5]}"
    real_dir = next(p for p in (server.root / "racedir", server.root / "racelink")
                    if p.is_dir() and not p.is_symlink())
    landed = [p for p in real_dir.iterdir() if p.name.startswith("up")]
    assert len(landed) == seen["STOR ok"] and seen["STOR ok"] > 10, dict(seen)
    assert seen["STOR 550"] > 10, dict(seen)
    assert set(seen) == {"STOR ok", "STOR 550"}, dict(seen)
    assert "internal server error" not in server.log


def test_every_command_while_a_directory_and_a_symlink_to_outside_swap(
        server: Running) -> None:
    """Listing, metadata, create, delete, rename, append, times: none reaches outside."""
    outside = _outside(server)
    canary = outside / "canary.txt"
    canary.write_bytes(SECRET)
    os.utime(canary, (915148800, 915148800))  # 1999-01-01: an MDTM nobody else has
    (outside / "keepdir").mkdir()
    before = _snapshot(outside)
    (server.root / "racedir").mkdir()
    os.symlink(outside, server.root / "racelink")
    leaks: list[str] = []
    seen: Counter[str] = Counter()

    def step(ftp: ftplib.FTP, n: int) -> None:
        def run(label: str, fn: Callable[[], object]) -> object:
            return _counting(seen, label, fn)

        if run("SIZE", lambda: ftp.size("racedir/canary.txt")) == len(SECRET):
            leaks.append("SIZE")
        mdtm = run("MDTM", lambda: ftp.voidcmd("MDTM racedir/canary.txt"))
        if isinstance(mdtm, str) and "19990101" in mdtm:
            leaks.append("MDTM")
        listed = run("NLST", lambda: ftp.nlst("racedir"))
        if isinstance(listed, list) and any("keepdir" in x for x in listed):
            leaks.append("NLST")
        for verb in ("LIST", "MLSD"):
            lines: list[str] = []
            run(verb, lambda v=verb, out=lines: ftp.retrlines(f"{v} racedir", out.append))
            if any("keepdir" in x for x in lines):
                leaks.append(verb)
        run("MKD", lambda: ftp.mkd("racedir/newdir"))
        run("RMD", lambda: ftp.rmd("racedir/keepdir"))
        run("DELE", lambda: ftp.delete("racedir/canary.txt"))
        run("RNFR", lambda: ftp.rename("racedir/canary.txt", "stolen.txt"))
        run("RNTO", lambda: ftp.rename("plant.txt", "racedir/planted.txt")
            if (server.root / "plant.txt").exists() else ftp.storbinary(
                "STOR plant.txt", io.BytesIO(b"plant")))
        run("MFMT", lambda: ftp.voidcmd("MFMT 20200101000000 racedir/canary.txt"))
        run("APPE", lambda: ftp.storbinary("APPE racedir/canary.txt",
                                           io.BytesIO(b"appended")))
        run("CWD", lambda: (ftp.cwd("/racedir"), ftp.storbinary(
            "STOR cwd-upload.txt", io.BytesIO(b"via cwd")), ftp.cwd("/")))
        run("RETR", lambda: ftp.retrbinary("RETR racedir/canary.txt", _no_secret))

    _race(server, server.root / "racedir", server.root / "racelink", step)
    assert leaks == [], f"outside entries reached: {Counter(leaks)} ({dict(seen)})"
    assert _snapshot(outside) == before, "the outside directory changed"
    assert stolen_or_none(server.root / "stolen.txt")
    # both states were met for the commands that write
    for verb in ("MKD", "APPE"):
        assert seen[f"{verb} ok"] > 0 and seen[f"{verb} 550"] > 0, dict(seen)
    assert not any(k.endswith(" 451") for k in seen), dict(seen)
    assert "internal server error" not in server.log


def _no_secret(chunk: bytes) -> None:
    assert b"SECRET" not in chunk, "RETR returned the outside file"


def stolen_or_none(p: Path) -> bool:
    """RNFR+RNTO never moved the outside canary in."""
    return not p.exists() or b"SECRET" not in p.read_bytes()


def _snapshot(d: Path) -> dict[str, tuple[int, int, float]]:
    out = {}
    for name in os.listdir(d):
        st = os.lstat(d / name)
        out[name] = (st.st_mode, st.st_size, st.st_mtime)
    return out
