"""Fixtures for the object-storage tests; the code lives in s3tools.py (a unique module
name, so test directories running in one pytest session never shadow each other). The
natftp server starter comes from tests/support/servertools.py."""

from s3tools import objects, rclone_s3, stop_servers  # noqa: F401
