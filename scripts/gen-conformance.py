#!/usr/bin/env python3
"""Rewrite the generated part of docs/conformance.md from the command table.

Run it after changing a row of ``natftp.server.commands`` (its note, its RFC, a new
command): ``.venv/bin/python scripts/gen-conformance.py``. With ``--check`` it changes
nothing and exits 1 when the page is out of date; ``tests/test_conformance_doc.py`` fails
while the page and the table disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from natftp.server.commands import CONFORMANCE_BEGIN, CONFORMANCE_END, conformance_markdown

PAGE = Path(__file__).resolve().parent.parent / "docs" / "conformance.md"


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print("usage: gen-conformance.py [--check]", file=sys.stderr)
        return 2
    text = PAGE.read_text(encoding="utf-8")
    if text.count(CONFORMANCE_BEGIN) != 1 or text.count(CONFORMANCE_END) != 1:
        print(f"{PAGE}: needs exactly one line {CONFORMANCE_BEGIN!r} and one line "
              f"{CONFORMANCE_END!r} around the generated part", file=sys.stderr)
        return 1
    head, rest = text.split(CONFORMANCE_BEGIN)
    tail = rest.split(CONFORMANCE_END)[1]
    new = head + conformance_markdown() + tail
    if new == text:
        print(f"{PAGE}: up to date")
        return 0
    if check:
        print(f"{PAGE}: out of date with the command table; run "
              "scripts/gen-conformance.py", file=sys.stderr)
        return 1
    PAGE.write_text(new, encoding="utf-8")
    print(f"{PAGE}: generated part rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
