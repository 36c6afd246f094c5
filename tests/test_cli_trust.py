"""Issue 14, the ``natftp`` command itself: ``--version``, shell completion, help without
a ``<bool>`` placeholder, ``natftp passwd`` (prompts on stderr, only the hash on stdout)
and ``natftp firewall`` (serve's defaults, a warning without a passive range). Real
``natftp`` processes; a real terminal (pty) where one is needed."""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import typer
from argon2 import PasswordHasher

NATFTP = [sys.executable, "-m", "natftp"]
#: the console script, as a shell finds it (completion is keyed to the program's name)
NATFTP_BIN = Path(sys.executable).parent / "natftp"


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NATFTP, *args], capture_output=True, text=True, timeout=60,
                          input=stdin, env={**os.environ, **(env or {})},
                          stdin=None if stdin is not None else subprocess.DEVNULL)


# -- --version, completion, help ------------------------------------------------------

def test_version_prints_the_installed_version() -> None:
    p = run("--version")
    assert p.returncode == 0
    assert p.stdout == f"natftp {importlib.metadata.version('natftp')}\n"
    assert p.stderr == ""


def test_completion_is_installed_for_bash_and_completes_subcommands(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path),
           "PATH": f"{NATFTP_BIN.parent}{os.pathsep}{os.environ['PATH']}"}
    # bash stays the parent process, so typer detects the shell as it would for a user
    shown = subprocess.run(["bash", "-c", "natftp --show-completion; exit $?"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "_NATFTP_COMPLETE=complete_bash" in shown.stdout
    inst = subprocess.run(["bash", "-c", "natftp --install-completion; exit $?"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert inst.returncode == 0, inst.stderr
    script = tmp_path / ".bash_completions" / "natftp.sh"
    assert script.is_file() and str(script) in (tmp_path / ".bashrc").read_text()
    # the installed script really completes: bash asks natftp, natftp answers
    words = {"natftp se": "serve", "natftp serve --state": "--state-dir"}
    for line, want in words.items():
        n = len(line.split()) - 1
        got = subprocess.run(["bash", "-c", f"source {script}; COMP_WORDS=({line}); "
                              f"COMP_CWORD={n}; _natftp_completion natftp; "
                              'printf "%s\\n" "${COMPREPLY[@]}"'], env=env,
                             capture_output=True, text=True, timeout=60)
        assert got.stdout.split() == [want], (line, got.stdout, got.stderr)


def _command_paths() -> list[list[str]]:
    """Every command and subcommand of ``natftp`` (walked from the app, then each help is
    asked of a real process)."""
    from natftp.cli import app

    def walk(cmd: Any, path: list[str]) -> list[list[str]]:
        out = [path]
        for name, sub in getattr(cmd, "commands", {}).items():
            out += walk(sub, [*path, name])
        return out

    return walk(typer.main.get_command(app), [])


#: ``natftp [PATH...] --help`` for each path, through natftp's own entry point, in one
#: process (one interpreter start instead of one per command)
HELP_ALL = """
import json, sys
from natftp.cli import main
for path in json.loads(sys.argv[1]):
    sys.argv = ["natftp", *path, "--help"]
    print("\\0" + " ".join(path), flush=True)
    try:
        main()
    except SystemExit as e:
        assert e.code in (0, None), (path, e.code)
"""


def test_help_shows_flags_without_a_type_placeholder() -> None:
    import json

    paths = _command_paths()
    assert ["serve"] in paths and ["lab", "up"] in paths and len(paths) > 15
    p = subprocess.run([sys.executable, "-c", HELP_ALL, json.dumps(paths)], text=True,
                       capture_output=True, timeout=120,
                       env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    assert p.returncode == 0, p.stderr
    helps = dict(part.split("\n", 1) for part in p.stdout.split("\0")[1:])
    assert len(helps) == len(paths)
    for name, out in helps.items():
        assert "Usage: natftp" in out, name
        assert "<bool>" not in out, (name, out)
        for ln in out.splitlines():
            if "--verbose" in ln or "--help " in ln:
                assert "<int>" not in ln and "<bool>" not in ln, (name, ln)
    root = helps[""]
    for flag in ("--version", "--install-completion", "--show-completion", "--help"):
        assert flag in root
    serve = next(ln for ln in helps["serve"].splitlines() if "--read-only" in ln)
    assert serve.split("--read-only", 1)[1].split()[0] == "No"  # the help, no type
    # an option that takes a value keeps its metavar
    assert "HOST:PORT" in next(ln for ln in helps["serve"].splitlines() if "--listen " in ln)


# -- natftp passwd ----------------------------------------------------------------------

def _read_until(fd: int, want: bytes, timeout: float = 30) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(want):
        left = deadline - time.monotonic()
        assert left > 0, f"no {want!r} on the terminal; got {got!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 1024)
            assert chunk, got
            got += chunk
    return got


def _passwd_on_a_terminal(answers: list[str]) -> tuple[int, str, bytes]:
    """``H=$(natftp passwd)`` as typed in a terminal: stdin and stderr are a pty that is
    the process's controlling terminal, stdout is a pipe. Returns (exit code, stdout,
    what the terminal showed)."""
    master, slave = pty.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([*NATFTP, "passwd"], stdin=slave, stderr=slave,
                            stdout=subprocess.PIPE, start_new_session=True,
                            preexec_fn=controlling_terminal)
    os.close(slave)
    screen = b""
    try:
        for answer in answers:
            screen += _read_until(master, b": ")
            os.write(master, answer.encode() + b"\n")
        out = proc.stdout.read().decode() if proc.stdout else ""
        rc = proc.wait(60)
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            screen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, out, screen


def test_passwd_prompts_on_the_terminal_and_prints_only_the_hash() -> None:
    rc, out, screen = _passwd_on_a_terminal(["pa ss", "pa ss"])
    assert rc == 0, screen
    assert out.count("\n") == 1 and out.startswith("$argon2id$")
    assert PasswordHasher().verify(out.strip(), "pa ss")
    assert b"Password: " in screen and b"Password (again): " in screen
    assert b"pa ss" not in screen  # not echoed


def test_passwd_asks_again_when_the_two_differ() -> None:
    rc, out, screen = _passwd_on_a_terminal(["one", "two", "three", "three"])
    assert rc == 0, screen
    assert b"natftp passwd: the two passwords differ; again" in screen
    assert out.count("\n") == 1 and PasswordHasher().verify(out.strip(), "three")


def test_passwd_reads_a_pipe_without_prompting() -> None:
    p = run("passwd", stdin="from a pipe\n")
    assert p.returncode == 0 and p.stderr == ""
    assert p.stdout.count("\n") == 1
    assert PasswordHasher().verify(p.stdout.strip(), "from a pipe")
    p = run("passwd", stdin="")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == ("natftp passwd: the password is empty; fix: give one (an empty "
                        "password protects nothing)\n")


# -- natftp firewall ----------------------------------------------------------------------

WARNING = ("natftp firewall: warning: no passive port range, so these rules open no "
           "passive data ports and passive transfers (PASV/EPSV) would be blocked; fix: "
           "give the server a range (natftp serve --passive-ports 30000-30099, or "
           "passive.ports) and the same one here (--passive-ports, or --config)\n")


def test_firewall_defaults_to_serves_defaults_and_warns_without_a_passive_range() -> None:
    p = run("firewall")
    assert p.returncode == 0
    assert "# control port 2121, passive ports none" in p.stdout
    assert "\t\ttcp dport 2121 ct state new accept" in p.stdout
    # serve's active.source_port = 0: active data from any port, not only from 20
    assert "\t\tmeta l4proto tcp ct state new accept" in p.stdout
    assert "sport 20" not in p.stdout
    assert p.stderr == WARNING
    p = run("firewall", "--backend", "iptables")
    assert p.returncode == 0 and "--dport 2121 " in p.stdout and p.stderr == WARNING


def test_firewall_with_a_passive_range_does_not_warn(tmp_path: Path) -> None:
    p = run("firewall", "--passive-ports", "30000-30099")
    assert p.returncode == 0 and p.stderr == ""
    assert "\t\ttcp dport { 2121, 30000-30099 } ct state new accept" in p.stdout
    cfg = tmp_path / "natftp.toml"
    cfg.write_text('[passive]\nports = "40000-40009"\n')
    p = run("firewall", "--config", str(cfg))
    assert p.returncode == 0 and p.stderr == ""
    assert "tcp dport { 2121, 40000-40009 }" in p.stdout  # the config's default listen
    cfg.write_text('listen = ["0.0.0.0:2200"]\n')
    p = run("firewall", "--config", str(cfg), "--active-source-port", "20")
    assert p.returncode == 0 and p.stderr == WARNING
    assert "tcp dport 2200 ct state new accept" in p.stdout
    assert "tcp sport 20 ct state new accept" in p.stdout  # the flag wins over the file
