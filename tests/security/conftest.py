"""Security corpus (issue 21): attacks run against a real ``natftp serve`` on loopback.

The server fixtures and the raw control connection come from tests/server (servertools.py,
ftpraw.py); this directory's own helpers live in modules with unique names.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
sys.path.insert(0, str(Path(__file__).parent))

from servertools import natftp_server, server  # noqa: E402, F401  (fixtures, by name)
