"""Fixtures for the server tests; the code lives in tests/support/servertools.py, shared
with the other test directories."""

from support.servertools import any_server, big_file, natftp_server, server  # noqa: F401
