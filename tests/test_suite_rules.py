"""Rules the test suite keeps (docs/HACKING.md), checked on its own files.

The tests import shared helpers from tests/support through pytest's ``pythonpath``, so
no test module edits ``sys.path``; and a test provisions nothing: users and Debian
packages come from scripts/setup-system.sh (``make system``), which CI runs first, so a
test never creates a user or fetches a package itself.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: a command, as a list element or the start of a shell string, that provisions
PROVISIONING = re.compile(r"""["'](useradd|adduser|chpasswd|apt-get|apt|dpkg)["' ]""")


def _sources() -> list[Path]:
    files = sorted(TESTS.rglob("*.py"))
    assert len(files) > 50, files  # the whole suite, not an empty glob
    return [f for f in files if f != Path(__file__).resolve()]


def test_no_test_module_edits_sys_path() -> None:
    offenders = [f"{f.relative_to(TESTS)}:{n}" for f in _sources()
                 for n, line in enumerate(f.read_text().splitlines(), 1)
                 if re.search(r"\bsys\.path\.(insert|append)\(", line)]
    assert offenders == [], ("import shared helpers as support.* (tests/support, on "
                             f"pytest's pythonpath) instead: {offenders}")


def test_no_test_creates_users_or_installs_packages() -> None:
    offenders = [f"{f.relative_to(TESTS)}:{n}: {line.strip()}" for f in _sources()
                 for n, line in enumerate(f.read_text().splitlines(), 1)
                 if PROVISIONING.search(line) and not line.lstrip().startswith("#")]
    assert offenders == [], ("provision in scripts/setup-system.sh; a test checks and "
                             f"fails naming the script: {offenders}")


def test_the_rules_catch_what_they_name() -> None:
    """The patterns match the lines the suite had before tests/support (so the checks
    above are not vacuous)."""
    assert re.search(r"\bsys\.path\.(insert|append)\(",
                     'sys.path.insert(0, str(Path(__file__).parent))')
    assert PROVISIONING.search('subprocess.run(["useradd", "-m", "-s", "/bin/bash", u])')
    assert PROVISIONING.search('subprocess.run(["apt-get", "download", "proftpd-core"])')
    assert not PROVISIONING.search('f"{name} is missing: run scripts/setup-system.sh '
                                   '(apt-get install {name})"')
