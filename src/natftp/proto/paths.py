"""Virtual path arithmetic: every path a client names becomes an absolute path inside
its home, or is refused.

A session's paths are *virtual*: ``/`` is the user's home. Clients write paths relative
to the working directory or absolute (which means "from the home", never from the real
file system root). ``..`` may move up inside the home but never above it; a NUL byte, an
overlong name or an overlong path is refused. The result is purely lexical: symlinks are
the storage layer's job (it resolves the real path and checks it stays inside).

Control characters (C0, DEL, C1) are refused in every name: a CR or LF would split the
reply that echoes the name (``MKD c\r226 fake`` would answer with two lines) and forge
lines in listings, and no client needs them.
"""

from __future__ import annotations

import re

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class PathError(ValueError):
    """A client path that cannot be allowed; ``str(e)`` is fit for a reply with ``code``
    (550, or 553 "file name not allowed" for a name no file may have here)."""

    def __init__(self, text: str, code: int = 550) -> None:
        super().__init__(text)
        self.code = code


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8", "surrogateescape"))


def resolve(cwd: str, arg: str) -> str:
    """Join ``arg`` onto the virtual ``cwd`` and normalise; refuse what would escape.

    >>> resolve("/a/b", "../c")
    '/a/c'
    >>> resolve("/", "/x//y/./")
    '/x/y'
    """
    if "\0" in arg:
        raise PathError("path contains a NUL byte")
    if not (arg.isascii() and arg.isprintable()):
        bad = _CONTROL.search(arg)
        if bad is not None:
            raise PathError(f"control character {bad.group()!r} in a name (names may not "
                            "contain CR, LF or other control characters)", 553)
    if not cwd.startswith("/"):
        raise PathError(f"working directory {cwd!r} is not absolute")
    base = [] if arg.startswith("/") else [p for p in cwd.split("/") if p]
    for part in arg.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not base:
                raise PathError(f"path {arg!r} leads above the home directory")
            base.pop()
            continue
        if _nbytes(part) > MAX_NAME_BYTES:
            raise PathError(f"name longer than {MAX_NAME_BYTES} bytes")
        base.append(part)
    out = "/" + "/".join(base)
    if _nbytes(out) > MAX_PATH_BYTES:
        raise PathError(f"path longer than {MAX_PATH_BYTES} bytes")
    return out


def only_up(arg: str) -> bool:
    """Whether ``arg`` only steps up (``..``, ``../..``, ``/..``) and names nothing."""
    parts = [p for p in arg.split("/") if p not in ("", ".")]
    return bool(parts) and all(p == ".." for p in parts)


def resolve_up(cwd: str, arg: str) -> str:
    """An :func:`only_up` path from ``cwd``: steps above the home stop at ``/`` (as
    ``/..`` is ``/`` in POSIX). For CWD and CDUP only: such a path cannot name anything
    outside, while a path with a name after the ``..`` (``../etc``) is still refused by
    :func:`resolve`.

    >>> resolve_up("/a", "../../..")
    '/'
    """
    if not only_up(arg):
        raise PathError(f"path {arg!r} does not only step up")
    base = [] if arg.startswith("/") else [p for p in cwd.split("/") if p]
    up = arg.split("/").count("..")
    return "/" + "/".join(base[:max(0, len(base) - up)])


def to_real(home: str, vpath: str) -> str:
    """The real path of a normalised virtual path under the real ``home`` (lexical)."""
    if not vpath.startswith("/") or "\0" in vpath:
        raise PathError(f"virtual path {vpath!r} is not normalised")
    if any(p in (".", "..") for p in vpath.split("/")):
        raise PathError(f"virtual path {vpath!r} is not normalised")
    home = home.rstrip("/") or "/"
    if vpath == "/":
        return home
    return (home if home != "/" else "") + vpath


def within(real_home: str, real_path: str) -> bool:
    """Whether ``real_path`` (already resolved) is ``real_home`` or below it."""
    home = real_home.rstrip("/") or "/"
    if home == "/":
        return real_path.startswith("/")
    return real_path == home or real_path.startswith(home + "/")


def parent(vpath: str) -> str:
    """``/a/b`` -> ``/a``; ``/`` -> ``/``."""
    head = vpath.rstrip("/").rsplit("/", 1)[0]
    return head or "/"


def basename(vpath: str) -> str:
    """``/a/b`` -> ``b``; ``/`` -> ``""``."""
    return vpath.rstrip("/").rsplit("/", 1)[-1]


def quote_257(vpath: str) -> str:
    """A path quoted for a 257 reply: enclosed in quotes, embedded quotes doubled."""
    return '"' + vpath.replace('"', '""') + '"'
