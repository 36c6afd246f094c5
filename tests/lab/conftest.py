"""NAT lab tests: root + Debian tools are required; missing ones FAIL with a clear message."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from natftp.lab.core import LabError, list_namespaces, own_prefix, require_root_and_tools

TOOLS = ("curl", "lftp", "iptables", "iptables-restore", "timeout")


@pytest.fixture(autouse=True)
def _root_and_tools() -> None:
    try:
        require_root_and_tools(TOOLS)
    except LabError as e:
        pytest.fail(f"{e} (scripts/setup-system.sh installs them; run `make test` as root)",
                    pytrace=False)


@pytest.fixture(autouse=True)
def _no_leftover_namespaces() -> Iterator[None]:
    """Every test must remove the namespaces it created (leftovers from before are ignored)."""
    if shutil.which("ip") is None:
        yield
        return
    before = set(list_namespaces(own_prefix()))
    yield
    left = set(list_namespaces(own_prefix())) - before
    assert not left, f"namespaces left behind: {sorted(left)}"
