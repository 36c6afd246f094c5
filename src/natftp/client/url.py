"""FTP URLs and where credentials come from (URL, then ~/.netrc, then anonymous).

Path semantics follow curl (RFC 1738): ``ftp://host/dir/file`` names ``dir/file``
relative to the directory the server puts us in at login, because on many servers (vsftpd
without chroot, ProFTPD with ``DefaultRoot`` off) the login directory is not ``/``. An
absolute path is written with an encoded slash: ``ftp://host/%2Fsrv/file`` -> ``/srv/file``.
"""

from __future__ import annotations

import netrc
import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"ftp": 21, "ftpes": 21, "ftps": 990}


class URLError(ValueError):
    """Not an ftp://, ftps:// or ftpes:// URL we can use."""


@dataclass(frozen=True, slots=True)
class FTPURL:
    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None
    path: str

    @property
    def tls(self) -> str | None:
        """``"implicit"`` for ftps://, ``"explicit"`` for ftpes://, else None."""
        return {"ftps": "implicit", "ftpes": "explicit"}.get(self.scheme)

    def display(self) -> str:
        """The URL without its password, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{self.scheme}://{user}{host}:{self.port}/{self.path}"


def is_url(text: str) -> bool:
    return text.lower().split("://", 1)[0] in DEFAULT_PORTS and "://" in text


def parse_url(url: str) -> FTPURL:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise URLError(f"{url!r}: scheme must be ftp://, ftps:// (implicit TLS) or "
                       "ftpes:// (explicit TLS)")
    if not parts.hostname:
        raise URLError(f"{url!r}: no host name")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as e:
        raise URLError(f"{url!r}: {e}") from e
    raw = parts.path
    if raw.startswith("/"):
        raw = raw[1:]
    path = unquote(raw)
    return FTPURL(scheme, parts.hostname, port,
                  unquote(parts.username) if parts.username is not None else None,
                  unquote(parts.password) if parts.password is not None else None, path)


def netrc_credentials(host: str, path: str | None = None) -> tuple[str, str] | None:
    """(login, password) for ``host`` from ~/.netrc (or ``$NETRC``), if there is an entry."""
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
