"""Fixtures for the server tests; the code lives in servertools.py (a unique module name,
so that test directories running in one pytest session never shadow each other)."""

from servertools import any_server, big_file, natftp_server, server  # noqa: F401
