"""Where the client's credentials come from when the URL has none: ``~/.netrc``.

URLs themselves are parsed by :mod:`natftp.proto.url` (one parser for the client and the
doctor); this module only reads the user's netrc file.
"""

from __future__ import annotations

import os


def netrc_credentials(host: str, path: str | None = None) -> tuple[str, str] | None:
    """(login, password) for ``host`` from ~/.netrc (or ``$NETRC``), if there is an entry."""
    import netrc  # only when a URL has no password

    file = path or os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if not os.path.exists(file):
        return None
    try:
        auth = netrc.netrc(file).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    if auth is None:
        return None
    login, _account, password = auth
    return login or "anonymous", password or ""
