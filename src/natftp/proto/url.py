"""FTP URLs: ``ftp://``, ``ftpes://`` (explicit TLS) and ``ftps://`` (implicit TLS).

One parser for every part that takes a URL (the client, its CLI, the doctor), so that the
scheme means the same everywhere: ``ftpes://`` is AUTH TLS on port 21, ``ftps://`` is TLS
from the first byte on port 990. The text form of a URL never shows its password
(``ftp://alice:****@host:21/``), and neither do the errors, which quote the URL masked.

Path semantics follow curl (RFC 1738): ``ftp://host/dir/file`` names ``dir/file``
relative to the directory the server puts us in at login, because on many servers (vsftpd
without chroot, ProFTPD with ``DefaultRoot`` off) the login directory is not ``/``. An
absolute path is written with an encoded slash: ``ftp://host/%2Fsrv/file`` -> ``/srv/file``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

from natftp.proto.hostport import format_hostport

TLSMode = Literal["explicit", "implicit"]

#: scheme -> (default port, TLS mode)
SCHEMES: dict[str, tuple[int, TLSMode | None]] = {
    "ftp": (21, None),
    "ftpes": (21, "explicit"),
    "ftps": (990, "implicit"),
}

MASK = "****"


class URLError(ValueError):
    """Not an ftp://, ftps:// or ftpes:// URL we can use; the text says why (masked)."""


@dataclass(frozen=True, slots=True)
class FTPURL:
    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None
    path: str

    @property
    def tls(self) -> TLSMode | None:
        """``"implicit"`` for ftps://, ``"explicit"`` for ftpes://, else None."""
        return SCHEMES[self.scheme][1]

    @property
    def hostport(self) -> str:
        """``host:port`` (``[v6]:port``), for messages."""
        return format_hostport(self.host, self.port)

    def display(self) -> str:
        """The URL with its password masked: what messages and logs show."""
        user = ""
        if self.user is not None:
            user = quote(self.user, safe="")
            if self.password is not None:
                user += ":" + MASK
            user += "@"
        return f"{self.scheme}://{user}{self.hostport}/{quote(self.path)}"

    def __str__(self) -> str:
        return self.display()

    def __repr__(self) -> str:
        return f"FTPURL({self.display()!r})"


def is_url(text: str) -> bool:
    """Whether ``text`` is written as an FTP URL (its scheme is one of ours)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


#: a URL's scheme and authority (up to the path, a space or a quote), found anywhere in
#: a text; the user info is what comes before the authority's *last* ``@`` (as urlsplit
#: reads it, so ``ftp://a:p@ss@h/`` hides all of ``p@ss``)
_AUTHORITY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/\s'\"()]*@)")


def _mask_userinfo(m: re.Match[str]) -> str:
    user, sep, _password = m.group(2)[:-1].partition(":")
    return f"{m.group(1)}{user}{':' + MASK if sep else ''}@"


def mask(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``****``: for messages
    about a URL that may not even parse, and for any message that quotes the command
    line (a usage error naming an extra argument)."""
    return _AUTHORITY.sub(_mask_userinfo, text)


def parse_url(url: str, *, default_scheme: str | None = None) -> FTPURL:
    """Parse an FTP URL; ``default_scheme`` is assumed when ``url`` has none
    (``"host:2121"`` for the doctor). Raises :class:`URLError`."""
    text = url.strip()
    if default_scheme is not None and "://" not in text:
        text = f"{default_scheme}://{text}"
    shown = mask(text)
    try:
        parts = urlsplit(text)
    except ValueError as e:  # "Invalid IPv6 URL": an unclosed [
        raise URLError(f"{shown!r}: {_why(e)}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise URLError(f"{shown!r}: scheme must be ftp://, ftps:// (implicit TLS) or "
                       "ftpes:// (explicit TLS)")
    if not parts.hostname:
        raise URLError(f"{shown!r}: no host name")
    try:
        port = parts.port
    except ValueError:
        raise URLError(f"{shown!r}: the port is not a number from 1 to 65535") from None
    if port == 0:
        raise URLError(f"{shown!r}: the port is not a number from 1 to 65535")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if any(c in (user or "") + (password or "") for c in "\r\n\0"):
        raise URLError(f"{shown!r}: control characters in the user name or password")
    raw = parts.path[1:] if parts.path.startswith("/") else parts.path
    path = unquote(raw)
    if any(c in path for c in "\r\n\0"):
        # an encoded CR/LF would end the command it is sent in (and start another one)
        raise URLError(f"{shown!r}: control characters (%0D, %0A, %00) in the path")
    return FTPURL(scheme, parts.hostname, port or SCHEMES[scheme][0], user, password,
                  path)


def _why(e: ValueError) -> str:
    text = str(e)
    if "IPv6" in text:
        return "the host's [ has no closing ] (write an IPv6 address as ftp://[::1]:21/)"
    return text
