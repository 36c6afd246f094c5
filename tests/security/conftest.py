"""Security tests (issue 21): hostile peers against a real server. The server fixtures
come from tests/server/servertools.py; helpers of this directory live beside this file
under unique module names."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

from servertools import any_server, big_file, natftp_server, server  # noqa: E402, F401
