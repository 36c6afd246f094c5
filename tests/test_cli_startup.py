"""Issue 22, item 3: each `natftp` command imports only what it uses.

Scripts call the client in loops, so start-up is paid every time: `natftp ls` must not
import typer, rich or the other parts, and `natftp --help` no part at all (the figures
are in bench/, `bench/run.py --bench startup`; tests never time things). Each case runs
the real entry point in a fresh interpreter and reads ``sys.modules`` after it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer

from natftp import cli

PROBE = """
import json, sys
from natftp.cli import main
sys.argv = ["natftp", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as e:
    code = e.code
print("\\0" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

PARTS = ("natftp.server", "natftp.client", "natftp.doctor", "natftp.gateway", "natftp.lab",
         "natftp.nat.cli", "natftp.nat.discovery")


def imported(*args: str) -> tuple[int, set[str]]:
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    out = json.loads(p.stdout.split("\0")[-1])
    return out["code"], set(out["modules"])


def under(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules for p in packages if m == p or m.startswith(p + ".")}


def test_root_help_and_version_import_no_part_and_no_typer() -> None:
    for args in (["--help"], ["--version"], []):
        code, mods = imported(*args)
        assert code == (2 if not args else 0), args
        assert not under(mods, "typer", "rich", "click", "asyncio", *PARTS), (args, mods)


@pytest.mark.parametrize("command", ["ls", "get", "put", "rm", "mkdir", "mv", "mirror"])
def test_a_client_command_imports_the_client_alone(command: str) -> None:
    """A refused connection (nothing listens on port 1) goes the whole way through the
    client: connect, error, exit status 3; typer, rich and the other parts stay out."""
    args = {"get": ["ftp://127.0.0.1:1/f", "out"], "put": [__file__, "ftp://127.0.0.1:1/"],
            "mv": ["ftp://127.0.0.1:1/a", "b"], "mirror": ["ftp://127.0.0.1:1/d", "d"]}
    code, mods = imported(command, *args.get(command, ["ftp://127.0.0.1:1/x"]))
    assert code == 3
    assert "natftp.client.cli" in mods
    assert not under(mods, "typer", "rich", "click", "natftp.server", "natftp.doctor",
                     "natftp.gateway", "natftp.lab", "natftp.nat.cli",
                     "natftp.nat.discovery"), mods


def test_another_command_imports_only_its_own_part() -> None:
    code, mods = imported("serve", "--help")
    assert code == 0 and "natftp.server.cli" in mods
    assert not under(mods, "natftp.client", "natftp.doctor", "natftp.gateway", "natftp.lab")
    code, mods = imported("lab", "--help")
    assert code == 0 and "natftp.lab.cli" in mods
    assert not under(mods, "natftp.server", "natftp.client", "natftp.doctor", "natftp.gateway")


def test_the_root_table_is_the_apps_commands_in_the_apps_order() -> None:
    """`natftp --help` is printed from natftp.cli.COMMANDS without importing the parts:
    the table must say what the parts register, where and in which order."""
    group = typer.main.get_command(cli.app)
    assert list(group.commands) == list(cli.COMMANDS)  # type: ignore[attr-defined]
    for name, sub in group.commands.items():  # type: ignore[attr-defined]
        part, text = cli.COMMANDS[name]
        module = sub.callback.__module__ if sub.callback else ""
        if module.endswith("client.cli"):
            assert part == "client"
        elif module:
            assert module == f"natftp.{part}.cli" or part == "nat", (name, module)
        full = " ".join((sub.help or "").split())
        assert full.startswith(text), (name, text, full)


def test_client_help_comes_from_the_same_table_as_the_typer_commands() -> None:
    """The client's commands exist twice (its own parser, and the typer app for
    completion): both from one table, so both list the same options."""
    from natftp.client.cli import COMMANDS

    group = typer.main.get_command(cli.app)
    for name, cmd in COMMANDS.items():
        sub = group.commands[name]  # type: ignore[attr-defined]
        typer_flags = {f for p in sub.params for f in getattr(p, "opts", [])
                       if f.startswith("-")}
        ours = {f for p in cmd.all_params for f in p.flags}
        assert typer_flags == ours, name
        p = subprocess.run([sys.executable, "-m", "natftp", name, "--help"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.startswith(f"Usage: natftp {name} [OPTIONS]")
        for flag in ours:
            assert flag in p.stdout, (name, flag)
