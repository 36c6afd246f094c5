"""docs/conformance.md carries the command table as it is in the code (issue 16)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from natftp.server.commands import (
    CONFORMANCE_BEGIN,
    CONFORMANCE_END,
    NOT_IMPLEMENTED,
    SITE_TABLE,
    TABLE,
    conformance_markdown,
)

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "conformance.md"


def test_the_page_holds_the_generated_table_unchanged() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert text.count(CONFORMANCE_BEGIN) == 1 and text.count(CONFORMANCE_END) == 1
    page = CONFORMANCE_BEGIN + text.split(CONFORMANCE_BEGIN)[1].split(CONFORMANCE_END)[0] \
        + CONFORMANCE_END
    assert page == conformance_markdown(), (
        "docs/conformance.md is out of date with the command table: run "
        ".venv/bin/python scripts/gen-conformance.py")


def test_every_command_has_its_row_and_specification() -> None:
    generated = conformance_markdown()
    for name, row in TABLE.items():
        assert row.rfc, f"{name} names no specification (CommandSpec.rfc)"
        assert f"| `{name}" in generated
    for name in SITE_TABLE:
        assert f"| `SITE {name}" in generated
    for name in NOT_IMPLEMENTED:
        assert f"| `{name}` |" in generated


def test_the_generator_script_finds_the_page_up_to_date() -> None:
    script = str(ROOT / "scripts" / "gen-conformance.py")
    p = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "up to date" in p.stdout, p
    p = subprocess.run([sys.executable, script, "--chek"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "usage" in p.stderr
