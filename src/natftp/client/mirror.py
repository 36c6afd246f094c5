"""Mirroring a directory tree in either direction.

Both sides are first read into a :class:`Tree` (relative POSIX path -> :class:`Node`);
:func:`plan` compares them and returns the actions, a pure function that the dry run
prints and the real run executes. A file is copied when it is missing, when the sizes
differ, or when the source is newer than the copy by more than both sides' time
precision (LIST times are to the minute, MLSD to the second). After a download the local
file gets the remote time, and after an upload the remote gets the local time (MFMT) when
the server allows it, so an unchanged tree needs no transfer the next time.

Deleting (``--delete``) is only as safe as the source's listing: a source that does not
exist, is not a directory, or cannot be listed all the way down is an error raised
before any action, never an empty tree whose absence would delete everything.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from natftp.client.partial import is_partial

if TYPE_CHECKING:
    from natftp.client._async import Client

ActionKind = Literal["mkdir", "copy", "delete", "rmdir"]


class MirrorError(Exception):
    """The mirror cannot start safely (its source is missing or not a directory);
    nothing was changed."""


@dataclass(frozen=True, slots=True)
class Node:
    is_dir: bool
    size: int | None = None
    modified: datetime | None = None
    precision: float = 1.0


Tree = dict[str, Node]


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    path: str
    reason: str
    size: int | None = None

    def __str__(self) -> str:
        return f"{self.kind:6} {self.path}  ({self.reason})"


@dataclass
class MirrorResult:
    actions: list[Action] = field(default_factory=list)
    dry_run: bool = False
    bytes: int = 0

    @property
    def copied(self) -> int:
        return sum(1 for a in self.actions if a.kind == "copy")


def plan(src: Tree, dst: Tree, *, delete: bool = False) -> list[Action]:
    """What to do to make ``dst`` like ``src``: replacements of a file by a directory (or
    the reverse) first, then mkdirs (parents before children), copies, and deletions of
    what the source lacks (children before parents)."""
    replace: list[Action] = []
    mk: list[Action] = []
    cp: list[Action] = []
    rm: list[Action] = []
    for path in sorted(src):
        s = src[path]
        d = dst.get(path)
        if s.is_dir:
            if d is None:
                mk.append(Action("mkdir", path, "missing"))
            elif not d.is_dir and delete:
                replace.append(Action("delete", path, "a file where a directory belongs"))
                mk.append(Action("mkdir", path, "replaces a file"))
            continue
        if d is None:
            cp.append(Action("copy", path, "new", s.size))
        elif d.is_dir:
            if delete:
                replace.append(Action("rmdir", path, "a directory where a file belongs"))
                cp.append(Action("copy", path, "replaces a directory", s.size))
        elif s.size is not None and d.size is not None and s.size != d.size:
            cp.append(Action("copy", path, f"size {d.size} -> {s.size}", s.size))
        elif s.modified is not None and d.modified is not None:
            slack = max(s.precision, d.precision)
            if (s.modified - d.modified).total_seconds() > slack:
                cp.append(Action("copy", path, "source is newer", s.size))
    if delete:
        gone = [a.path + "/" for a in replace if a.kind == "rmdir"]
        for path in sorted(dst, key=lambda p: (-p.count("/"), p)):
            if path in src or any(path.startswith(g) for g in gone):
                continue
            rm.append(Action("rmdir" if dst[path].is_dir else "delete", path,
                             "not in source"))
    return replace + mk + cp + rm


def local_tree(root: str) -> Tree:
    """The tree under ``root`` ({} when it does not exist: a destination yet to be made).
    A directory that cannot be read raises (``os.walk`` would skip it silently). The
    partial files of unfinished downloads (``.NAME.natftp-part``) are not part of it:
    never uploaded as files of their own, and the next download of NAME reuses them."""

    tree: Tree = {}
    if not os.path.isdir(root):
        return tree

    def fail(e: OSError) -> None:
        raise e

    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        rel = os.path.relpath(dirpath, root)
        base = "" if rel == "." else rel.replace(os.sep, "/")
        for d in dirnames:
            tree[posixpath.join(base, d) if base else d] = Node(True)
        for f in filenames:
            if is_partial(f):
                continue
            st = os.stat(os.path.join(dirpath, f))
            tree[posixpath.join(base, f) if base else f] = Node(
                False, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), 1.0)
    return tree


async def remote_tree(client: Client, root: str, *, source: bool = False) -> Tree:
    """The tree under the remote ``root``. As a destination it may be missing ({}); as
    the ``source`` it must be a directory (:class:`MirrorError` otherwise). Any listing
    that fails raises, so no part of the source passes for empty."""
    from natftp.ftpio.errors import PermanentError

    tree: Tree = {}
    try:
        top = await client.stat(root or ".")
    except PermanentError as e:
        if source:
            raise MirrorError(f"the source directory {root or '.'!r} is not on the server "
                              f"({e.code} {e.text}); nothing was changed") from e
        return tree
    if not top.is_dir:
        if source:
            raise MirrorError(f"the source {root!r} on the server is a file, not a "
                              "directory; nothing was changed")
        raise MirrorError(f"the destination {root!r} on the server is a file, not a "
                          "directory; nothing was changed")
    async for dirpath, dirs, files in client.walk(root):
        rel = dirpath[len(root):].lstrip("/") if root else dirpath
        for e in dirs:
            tree[posixpath.join(rel, e.name) if rel else e.name] = Node(True)
        for e in files:
            tree[posixpath.join(rel, e.name) if rel else e.name] = Node(
                False, e.size, e.modified, e.precision)
    return tree


def _rjoin(root: str, rel: str) -> str:
    return posixpath.join(root, rel) if root else rel


async def mirror_down(client: Client, remote: str, local: str, *, delete: bool = False,
                      dry_run: bool = False,
                      on_action: Callable[[Action], None] | None = None) -> MirrorResult:
    src = await remote_tree(client, remote, source=True)
    if os.path.exists(local) and not os.path.isdir(local):
        raise MirrorError(f"the destination {local!r} is a file, not a directory; nothing "
                          "was changed")
    dst = local_tree(local)
    result = MirrorResult(plan(src, dst, delete=delete), dry_run)
    if dry_run:
        return result
    os.makedirs(local, exist_ok=True)
    for a in result.actions:
        if on_action is not None:
            on_action(a)
        target = os.path.join(local, *a.path.split("/"))
        if a.kind == "mkdir":
            os.makedirs(target, exist_ok=True)
        elif a.kind == "copy":
            result.bytes += await client.download(_rjoin(remote, a.path), target)
            m = src[a.path].modified
            if m is not None:
                os.utime(target, (m.timestamp(), m.timestamp()))
        elif a.kind == "delete":
            os.remove(target)
        else:
            import shutil
            shutil.rmtree(target)
    return result


async def mirror_up(client: Client, local: str, remote: str, *, delete: bool = False,
                    dry_run: bool = False,
                    on_action: Callable[[Action], None] | None = None) -> MirrorResult:
    if not os.path.isdir(local):
        raise MirrorError(f"the source directory {local!r} does not exist here (or is not "
                          "a directory); nothing was changed")
    src = local_tree(local)
    dst = await remote_tree(client, remote)
    result = MirrorResult(plan(src, dst, delete=delete), dry_run)
    if dry_run:
        return result
    if remote and not dst:
        await client.mkdir(remote, parents=True, exist_ok=True)
    for a in result.actions:
        if on_action is not None:
            on_action(a)
        target = _rjoin(remote, a.path)
        if a.kind == "mkdir":
            await client.mkdir(target)
        elif a.kind == "copy":
            result.bytes += await client.upload(os.path.join(local, *a.path.split("/")),
                                                target)
            m = src[a.path].modified
            if m is not None:
                await client.set_mtime(target, m)
        elif a.kind == "delete":
            await client.remove(target)
        else:
            await _remove_tree(client, target)
    return result


async def _remove_tree(client: Client, path: str) -> None:
    entries = await client.list(path)
    for e in entries:
        child = posixpath.join(path, e.name)
        if e.is_dir:
            await _remove_tree(client, child)
        else:
            await client.remove(child)
    await client.rmdir(path)
