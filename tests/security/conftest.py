"""Security corpus (issue 21): attacks run against a real ``natftp serve`` on loopback.

The server fixtures and the raw control connection come from tests/support (servertools,
ftpraw); this directory's own helpers live in modules with unique names.
"""

from support.servertools import natftp_server, server  # noqa: F401  (fixtures, by name)
