"""Fixtures for the object-storage tests; the code lives in s3tools.py (a unique module
name, so test directories running in one pytest session never shadow each other). The
natftp server starter comes from tests/server/servertools.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from s3tools import objects, rclone_s3, stop_servers  # noqa: E402, F401
