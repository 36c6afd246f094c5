"""Mirroring a directory tree in either direction.

Both sides are first read into a :class:`Tree` (relative POSIX path -> :class:`Node`);
:func:`plan` compares them and returns the actions, a pure function that the dry run
prints and the real run executes. A file is copied when it is missing, when the sizes
differ, or when the source is newer than the copy by more than both sides' time
precision (LIST times are to the minute, MLSD to the second). After a download the local
file gets the remote time, and after an upload the remote gets the local time (MFMT) when
the server allows it, so an unchanged tree needs no transfer the next time.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from natftp.client._async import Client

ActionKind = Literal["mkdir", "copy", "delete", "rmdir"]


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
    tree: Tree = {}
    if not os.path.isdir(root):
        return tree
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        base = "" if rel == "." else rel.replace(os.sep, "/")
        for d in dirnames:
            tree[posixpath.join(base, d) if base else d] = Node(True)
        for f in filenames:
            st = os.stat(os.path.join(dirpath, f))
            tree[posixpath.join(base, f) if base else f] = Node(
                False, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), 1.0)
    return tree


async def remote_tree(client: Client, root: str) -> Tree:
    tree: Tree = {}
    if not await client.exists(root or "."):
        return tree
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
    src = await remote_tree(client, remote)
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
        raise FileNotFoundError(f"{local} is not a directory")
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
