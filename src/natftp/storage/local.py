"""Local-disk storage for one user's home: every path is resolved from a directory fd of
the home, so no race with a symlink can lead outside it.

:mod:`natftp.proto.paths` makes every client path a normalised virtual path inside the
home, lexically. Here the real file system joins in, and it can change under our feet:
anyone who can create entries in the tree (a local user, another service, a second FTP
session) can swap a path component for a symlink between a check and a use. So nothing
here checks a path string and then opens it by name. Every operation starts from the
home's directory fd and

- opens the parents of the last component one at a time with ``O_NOFOLLOW`` (or in one
  ``openat2(RESOLVE_BENEATH)`` call where the kernel has it, Linux >= 5.6, which refuses
  any step that leaves the home), and
- acts on the last component through that directory fd (``openat``, ``fstatat``,
  ``unlinkat``, ``renameat``, ``mkdirat``...), never following a symlink there unless the
  operation reads.

**Symlinks.** A symlink inside the home whose target is inside the home keeps working for
reads (RETR, SIZE, MDTM, MLST, listings, CWD) and as a directory on the way to a name: the
target is resolved the same way (a relative target component by component from the
directory the link is in, an absolute one only when it names the real home, then from
the home's fd), so it cannot climb out either. A target outside the home is refused
(:class:`Escape`). Operations on the name itself (DELE, RMD, RNFR/RNTO, STOR's final
rename, APPE and REST+STOR in place) never follow the last component: DELE removes the
link, RMD refuses it, STOR replaces the link by the uploaded file, APPE refuses it.

**Reserved names.** Uploads are written to a hidden name beside their target
(``.natftp-upload-<name>.part``) and renamed into place when complete; an interrupted one
stays there to be resumed (REST+STOR or APPE on the target name find it). No client may
name such a file (553), and listings leave them out.

Metadata calls are plain blocking syscalls on purpose: on a local disk they take
microseconds, far less than a thread hand-off. File data moves by file descriptor (the
server's data path uses sendfile and recv_into on them).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import TypeVar

from natftp.proto.listing import FileFacts

#: uploads are written to a hidden name in the target directory (the reserved pattern)
TEMP_PREFIX = ".natftp-upload-"
TEMP_SUFFIX = ".part"
#: at most this many symlinks are followed while resolving one path (Linux: 40)
MAX_SYMLINKS = 40
#: a name that keeps being swapped between our look and our use: tries before giving up
_RETRIES = 8

T = TypeVar("T")


class StorageError(Exception):
    """A refused or failed file operation; ``str(e)`` is fit for a reply whose code is
    ``code`` (550 unless the cause says otherwise)."""

    code = 550

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        if code is not None:
            self.code = code


class Escape(StorageError):
    """A path that leads outside the home (through a symlink)."""


class NotAllowed(StorageError):
    """A name no client may use (the reserved upload pattern): 553, RFC 959's "file name
    not allowed"."""

    code = 553


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is in the reserved pattern of upload files."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def partial_name(name: str) -> str:
    """The hidden name an upload to ``name`` is written to (and kept under, to be resumed,
    when it is interrupted); a name too long to carry is replaced by its hash."""
    cand = f"{TEMP_PREFIX}{name}{TEMP_SUFFIX}"
    if len(os.fsencode(cand)) <= 255:
        return cand
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:40]
    return f"{TEMP_PREFIX}{digest}{TEMP_SUFFIX}"


#: errno -> reply code for failures that are not "no such file / not permitted"
_CODES = {errno.ENOSPC: 452, errno.EDQUOT: 552, errno.EFBIG: 552}


def reply_code(e: OSError) -> int:
    """The FTP reply code for a failed file operation: 452 for a full disk, 552 for an
    exceeded quota or file size (RFC 959), else 550."""
    return _CODES.get(e.errno or 0, 550)


def _why(e: OSError) -> str:
    """strerror in the middle of a sentence: "no such file or directory"."""
    text = e.strerror or str(e)
    return text[:1].lower() + text[1:]


def _fail(what: str, e: OSError) -> StorageError:
    return StorageError(f"{what}: {_why(e)}", reply_code(e))


# -- openat2 (Linux >= 5.6) ---------------------------------------------------------------

_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every architecture of the common table


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def _make_openat2() -> Callable[[int, str, int], int] | None:
    """``openat2(dirfd, path, {flags, resolve=BENEATH|NO_MAGICLINKS})`` through libc's
    ``syscall``: the kernel walks ``path`` from ``dirfd`` and refuses (EXDEV) any step that
    leaves it, following relative symlinks that stay beneath. None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syscall
    except (OSError, AttributeError):
        return None
    call.restype = ctypes.c_long
    call.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                     ctypes.c_size_t]
    size = ctypes.sizeof(_OpenHow)
    hows: dict[int, _OpenHow] = {}

    def openat2(dirfd: int, path: str, flags: int) -> int:
        how = hows.get(flags)
        if how is None:
            how = hows[flags] = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
        fd: int = call(_SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how), size)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd

    return openat2


#: None where the kernel or platform has no openat2 (set to None at the first ENOSYS):
#: the component-by-component walk then does all the work
_openat2 = _make_openat2()
#: openat2 answers that mean "a symlink the kernel would not resolve for us" (absolute,
#: or leading out), "a rename raced with '..'" or "no openat2": the walk decides
_WALK_ERRNOS = frozenset((errno.EXDEV, errno.ELOOP, errno.EAGAIN, errno.ENOSYS))


# -- directory fds of homes -----------------------------------------------------------------

#: directory fds of homes (O_PATH), one per distinct home, opened at first use and kept
_HOME_FDS: dict[str, int] = {}
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LINK_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO (or a device) must not wait for its other end and stall the
# event loop; it changes nothing for a regular file, and anything else is refused after
# fstat anyway
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_LIST_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _home_fd(home: str) -> int:
    fd = _HOME_FDS.get(home)
    if fd is None:
        try:
            fd = os.open(home, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise StorageError(f"the home directory is not usable ({_why(e)})") from e
        _HOME_FDS[home] = fd
    return fd


def _names(vpath: str) -> list[str]:
    """The components of a normalised virtual path (``/`` -> []); a client may not name
    the reserved upload pattern anywhere in it."""
    if vpath == "/":
        return []
    names = vpath[1:].split("/")
    if vpath[0] != "/" or "" in names or "." in names or ".." in names or "\0" in vpath:
        raise StorageError(f"virtual path {vpath!r} is not normalised")
    refuse_reserved(vpath)
    return names


def refuse_reserved(vpath: str) -> None:
    """:class:`NotAllowed` when a component of ``vpath`` is in the reserved pattern of
    upload files: no client may name an upload in progress or kept (on disk, or the
    object-storage backend's state)."""
    if TEMP_PREFIX in vpath:
        for n in vpath.split("/"):
            if is_temp_name(n):
                raise NotAllowed(f"{n}: names like {TEMP_PREFIX}*{TEMP_SUFFIX} are "
                                 "reserved for uploads in progress")


def _join(vpath: str, name: str) -> str:
    return ("" if vpath == "/" else vpath) + "/" + name


class LocalStorage:
    """One user's view of the disk: virtual paths under ``home`` (a real directory)."""

    __slots__ = ("home",)

    def __init__(self, home: str) -> None:
        self.home = os.path.realpath(home)

    # -- resolution ----------------------------------------------------------------------

    def _inside(self, target: str) -> list[str] | None:
        """An absolute symlink target as components below the home, or None when it does
        not name the (real) home or something in it."""
        home = self.home.rstrip("/")
        if target == home or target == home + "/":
            return []
        if not target.startswith(home + "/"):
            return None
        return target[len(home) + 1:].split("/")

    def _walk(self, vpath: str, names: list[str], follow_last: bool) -> tuple[int, str]:
        """The portable resolution: (directory fd, name) of the last component, every
        component before it opened with ``O_NOFOLLOW`` from the one before, starting at
        the home's fd. A symlink on the way (and the last one, with ``follow_last``) is
        replaced by its target's components, walked the same way: '..' pops a directory
        this walk opened (never above the home), an absolute target restarts at the home
        if it names it. The fd is the caller's to close unless it is the home's.

        With ``follow_last`` the returned name was not a symlink when looked at; the
        caller acts with ``O_NOFOLLOW`` / ``follow_symlinks=False`` and walks again if it
        has become one since."""
        root = _home_fd(self.home)
        stack: list[int] = []
        todo = names[::-1]
        links = 0
        try:
            while True:
                if not todo:  # the path ended on the directory itself (a "." or "..")
                    return (stack.pop() if stack else root), "."
                name = todo.pop()
                if name in ("", "."):
                    continue
                if name == "..":
                    if not stack:
                        raise Escape(f"{vpath} leads outside the home directory (symlink)")
                    os.close(stack.pop())
                    continue
                cur = stack[-1] if stack else root
                last = not todo
                target = None
                if last and not follow_last:
                    return (stack.pop() if stack else root), name
                if last:
                    try:
                        fd = os.open(name, _LINK_FLAGS, dir_fd=cur)
                    except FileNotFoundError:
                        return (stack.pop() if stack else root), name
                    try:
                        if stat.S_ISLNK(os.fstat(fd).st_mode):
                            target = os.readlink("", dir_fd=fd)
                    finally:
                        os.close(fd)
                    if target is None:
                        return (stack.pop() if stack else root), name
                else:
                    try:
                        stack.append(os.open(name, _DIR_FLAGS, dir_fd=cur))
                        continue
                    except NotADirectoryError:
                        fd = os.open(name, _LINK_FLAGS, dir_fd=cur)
                        try:
                            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                                raise
                            target = os.readlink("", dir_fd=fd)
                        finally:
                            os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                if target.startswith("/"):
                    inside = self._inside(target)
                    if inside is None:
                        raise Escape(f"{vpath} leads outside the home directory (symlink)")
                    while stack:
                        os.close(stack.pop())
                    todo.extend(reversed(inside))
                else:
                    todo.extend(reversed(target.split("/")))
        finally:
            for fd in stack:
                os.close(fd)

    def _parent(self, vpath: str, names: list[str]) -> tuple[int, str]:
        """(directory fd, name) for acting on the last component itself (never followed);
        the directories before it are resolved safely. Close the fd unless it is the
        home's."""
        root = _home_fd(self.home)
        if len(names) == 1:
            return root, names[0]
        if not names:
            return root, "."
        global _openat2
        if _openat2 is not None:
            try:
                return _openat2(root, "/".join(names[:-1]), _DIR_FLAGS & ~os.O_NOFOLLOW
                                ), names[-1]
            except OSError as e:
                if e.errno == errno.ENOSYS:
                    _openat2 = None
                if e.errno not in _WALK_ERRNOS:
                    raise
        return self._walk(vpath, names, follow_last=False)

    def _open(self, vpath: str, names: list[str], flags: int) -> int:
        """Open the object ``vpath`` names, following symlinks that stay inside the home
        (``flags`` without O_NOFOLLOW; an O_PATH fd is of the object, never of a link)."""
        root = _home_fd(self.home)
        global _openat2
        if len(names) <= 1:
            try:
                fd = os.open(names[0] if names else ".", flags | os.O_NOFOLLOW, dir_fd=root)
                if not flags & os.O_PATH or not stat.S_ISLNK(os.fstat(fd).st_mode):
                    return fd
                os.close(fd)
            except OSError as e:
                # ELOOP: a symlink (ENOTDIR too, when a directory was asked for)
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
        elif _openat2 is not None:
            try:
                return _openat2(root, "/".join(names), flags)
            except OSError as e:
                if e.errno == errno.ENOSYS:
                    _openat2 = None
                if e.errno not in _WALK_ERRNOS:
                    raise
        for _ in range(_RETRIES):
            dfd, name = self._walk(vpath, names, follow_last=True)
            try:
                fd = os.open(name, flags | os.O_NOFOLLOW, dir_fd=dfd)
                if flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
                    os.close(fd)
                    continue
                return fd
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR) or name == ".":
                    raise
                if not stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False
                                            ).st_mode):
                    raise
            finally:
                if dfd != root:
                    os.close(dfd)
        raise StorageError(f"{vpath} kept changing while it was opened; try again", 450)

    def _at(self, vpath: str, names: list[str], op: Callable[[int, str], T]) -> T:
        """Run ``op(dir_fd, name)`` on the last component itself; OSError -> StorageError."""
        dfd, name = self._parent(vpath, names)
        try:
            return op(dfd, name)
        finally:
            if dfd != _HOME_FDS.get(self.home):
                os.close(dfd)

    # -- metadata ------------------------------------------------------------------------

    def stat(self, vpath: str) -> os.stat_result:
        """What ``vpath`` names, a symlink inside the home followed."""
        try:
            names = _names(vpath)
            if len(names) == 1:  # the common case: one fstatat
                st = os.stat(names[0], dir_fd=_home_fd(self.home), follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    return st
            fd = self._open(vpath, names, os.O_PATH | os.O_CLOEXEC)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise _fail(vpath, e) from e

    def facts(self, vpath: str) -> FileFacts:
        name = vpath.rstrip("/").rsplit("/", 1)[-1]
        return FileFacts.from_stat(name or "/", self.stat(vpath))

    def is_dir(self, vpath: str) -> bool:
        try:
            return stat.S_ISDIR(self.stat(vpath).st_mode)
        except StorageError:
            return False

    def partial_size(self, vpath: str) -> int | None:
        """The size of the interrupted upload kept for ``vpath`` (to be resumed), or None
        when there is none."""
        try:
            names = _names(vpath)
            if not names:
                return None
            st = self._at(vpath, names, lambda d, n: os.stat(partial_name(n), dir_fd=d,
                                                             follow_symlinks=False))
        except (OSError, StorageError):
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return None
        return st.st_size

    def listdir(self, vpath: str) -> Iterator[FileFacts]:
        """Entries of a directory, sorted by name, as they are read (an iterator: the
        directory is opened now, entries are stat'ed as the caller takes them). Left out:
        upload files in the reserved pattern, names with control characters (a client
        could not name them, and a line break would forge listing lines), symlinks that
        lead outside the home or nowhere, entries that vanish meanwhile."""
        try:
            fd = self._open(vpath, _names(vpath), _LIST_FLAGS)
        except OSError as e:
            raise _fail(vpath, e) from e
        try:
            # names only (a DirEntry costs several times its name: a 100k-entry
            # directory listed by a few sessions at once must not hold them all)
            with os.scandir(fd) as it:
                names = sorted(e.name for e in it if _listable(e.name))
        except OSError as e:
            os.close(fd)
            raise _fail(vpath, e) from e
        return self._facts_of(fd, vpath, names)

    def _facts_of(self, fd: int, vpath: str, names: list[str]) -> Iterator[FileFacts]:
        try:
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        st = self.stat(_join(vpath, name))
                except (OSError, StorageError):
                    continue
                yield FileFacts.from_stat(name, st)
        finally:
            os.close(fd)

    # -- changes ---------------------------------------------------------------------------

    def mkdir(self, vpath: str) -> None:
        try:
            names = _names(vpath)
            if not names:
                raise StorageError("the home directory exists already")
            self._at(vpath, names, lambda d, n: os.mkdir(n, 0o755, dir_fd=d))
        except OSError as e:
            raise _fail(vpath, e) from e

    def rmdir(self, vpath: str) -> None:
        """Remove an empty directory; a symlink (even to a directory) is refused, never
        its target removed."""
        def op(d: int, n: str) -> None:
            try:
                os.rmdir(n, dir_fd=d)
            except NotADirectoryError:
                if stat.S_ISLNK(os.stat(n, dir_fd=d, follow_symlinks=False).st_mode):
                    raise StorageError(f"{vpath} is a symbolic link, not a directory "
                                       "(DELE removes the link itself)") from None
                raise
        try:
            names = _names(vpath)
            if not names:
                raise StorageError("the home directory cannot be removed")
            self._at(vpath, names, op)
        except OSError as e:
            raise _fail(vpath, e) from e

    def remove(self, vpath: str) -> None:
        """Delete a file, or a symlink itself (never its target), and any interrupted
        upload kept for that name. Only such an upload there: it is removed."""
        def op(d: int, n: str) -> None:
            try:
                os.unlink(n, dir_fd=d)
            except IsADirectoryError:
                raise StorageError(f"{vpath} is a directory (use RMD)") from None
            except FileNotFoundError:
                if not _expire(d, partial_name(n), -1.0, 0.0):
                    raise
                return
            _expire(d, partial_name(n), -1.0, 0.0)
        try:
            names = _names(vpath)
            if not names:
                raise StorageError("the home directory cannot be deleted")
            self._at(vpath, names, op)
        except OSError as e:
            raise _fail(vpath, e) from e

    def exists(self, vpath: str) -> None:
        """Raise StorageError unless the name exists (itself: a symlink counts, RNFR)."""
        try:
            names = _names(vpath)
            if not names:
                raise StorageError("the home directory cannot be renamed")
            self._at(vpath, names, lambda d, n: os.stat(n, dir_fd=d, follow_symlinks=False))
        except OSError as e:
            raise _fail(vpath, e) from e

    def rename(self, src: str, dst: str) -> None:
        """Rename the entry itself (a symlink is renamed, not its target); a file at
        ``dst`` is replaced, as rename(2) does."""
        if src == "/" or dst == "/":
            raise StorageError("the home directory cannot be renamed")
        try:
            sn, dn = _names(src), _names(dst)
            root = _home_fd(self.home)
            sfd, sname = self._parent(src, sn)
            try:
                dfd, dname = self._parent(dst, dn)
                try:
                    os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
                finally:
                    if dfd != root:
                        os.close(dfd)
            finally:
                if sfd != root:
                    os.close(sfd)
        except OSError as e:
            raise _fail(f"{src} -> {dst}", e) from e

    def _on_object(self, vpath: str, op: Callable[[int, str], None]) -> None:
        """Run ``op(dir_fd, name)`` on what ``vpath`` names, symlinks inside followed: the
        last component is resolved like a read, then acted on without following (if it
        has just become a link, again)."""
        names = _names(vpath)
        root = _home_fd(self.home)
        if len(names) == 1 and not stat.S_ISLNK(
                os.stat(names[0], dir_fd=root, follow_symlinks=False).st_mode):
            with suppress(_Changed):
                op(root, names[0])
                return
        for _ in range(_RETRIES):
            dfd, name = self._walk(vpath, names, follow_last=True)
            try:
                op(dfd, name)
                return
            except _Changed:
                continue
            finally:
                if dfd != root:
                    os.close(dfd)
        raise StorageError(f"{vpath} kept changing while it was changed; try again", 450)

    def set_mtime(self, vpath: str, mtime: float) -> None:
        """MFMT: the modification time of the file ``vpath`` names (a link inside is
        followed, as MDTM reports the target's time)."""
        def op(d: int, n: str) -> None:
            _not_link(d, n)
            os.utime(n, (mtime, mtime), dir_fd=d, follow_symlinks=False)
        try:
            self._on_object(vpath, op)
        except OSError as e:
            raise _fail(vpath, e) from e

    def chmod(self, vpath: str, mode: int) -> None:
        """SITE CHMOD: the permission bits of the name ``vpath`` (only the 0o777 bits:
        set-id and sticky bits are never set by a client), changed through its
        directory's fd without following (``fchmodat`` with ``AT_SYMLINK_NOFOLLOW``): a
        symlink is refused, never its target changed."""
        def op(d: int, n: str) -> None:
            link = f"{vpath} is a symbolic link; change its target instead"
            if stat.S_ISLNK(os.stat(n, dir_fd=d, follow_symlinks=False).st_mode):
                raise StorageError(link)
            try:
                os.chmod(n, mode & 0o777, dir_fd=d, follow_symlinks=False)
            except (ValueError, NotImplementedError) as e:
                raise StorageError(link) from e  # it became a symlink since the look
            except OSError as e:
                if e.errno != errno.EOPNOTSUPP:
                    raise
                raise StorageError(link) from e
        try:
            names = _names(vpath)
            if not names:
                raise StorageError("the home directory's permissions cannot be changed")
            self._at(vpath, names, op)
        except OSError as e:
            raise _fail(vpath, e) from e

    # -- file data -------------------------------------------------------------------------

    def open_read(self, vpath: str) -> tuple[int, int]:
        """(fd, size) of a regular file, opened for reading."""
        try:
            names = _names(vpath)
            if len(names) == 1:  # the hot path of a small download: one openat
                try:
                    fd = os.open(names[0], _READ_FLAGS, dir_fd=_home_fd(self.home))
                except OSError as e:
                    if e.errno != errno.ELOOP:
                        raise
                    fd = self._open(vpath, names, _READ_FLAGS & ~os.O_NOFOLLOW)
            else:
                fd = self._open(vpath, names, _READ_FLAGS & ~os.O_NOFOLLOW)
        except OSError as e:
            raise _fail(vpath, e) from e
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise StorageError(f"{vpath} is not a regular file")
        return fd, st.st_size

    def open_write(self, vpath: str, *, offset: int = 0, append: bool = False,
                   unique: bool = False) -> Upload:
        """Open an upload (see :class:`Upload` for commit and discard).

        A plain STOR (and APPE to a name that does not exist) writes to the hidden
        ``partial_name`` beside the target and renames it into place when complete, so
        a file being replaced is never seen half-written; if that name is busy with
        another session's upload, a random hidden name is used instead (not resumable).
        REST+STOR and APPE continue an interrupted upload kept under the hidden name if
        there is one, else the visible file in place. ``unique`` (STOU): the final rename
        never replaces a file that appeared meanwhile.
        """
        try:
            names = _names(vpath)
            if not names:
                raise StorageError("/ is a directory")
            dfd, name = self._parent(vpath, names)
        except OSError as e:
            raise _fail(vpath, e) from e
        own = dfd != _HOME_FDS.get(self.home)
        try:
            return _open_upload(dfd, own, vpath, name, offset, append, unique)
        except BaseException:
            if own:
                os.close(dfd)
            raise

    def unique_name(self, vdir: str, stem: str) -> str:
        """A virtual path in ``vdir`` that does not exist yet (STOU)."""
        for _ in range(100):
            cand = _join(vdir, f"{stem}.{secrets.token_hex(4)}")
            try:
                self.exists(cand)
            except NotAllowed:
                raise
            except StorageError:
                return cand
        raise StorageError("could not find a unique name")

    def expire_partial(self, vpath: str, max_age: float, now: float | None = None) -> bool:
        """Remove the upload file at ``vpath`` (a reserved name: server housekeeping, not
        a client's request) if it is older than ``max_age`` seconds and no upload is
        writing to it. True when it is gone (removed now, or already)."""
        names = vpath[1:].split("/")
        try:
            dfd, name = self._parent(vpath, names)
        except (OSError, StorageError):
            return True
        try:
            return _expire(dfd, name, max_age, time.time() if now is None else now
                           ) is not False
        finally:
            if dfd != _HOME_FDS.get(self.home):
                os.close(dfd)


class _Changed(Exception):
    """The name became a symlink between our look and our use."""


def _not_link(d: int, n: str) -> None:
    if stat.S_ISLNK(os.stat(n, dir_fd=d, follow_symlinks=False).st_mode):
        raise _Changed


def _listable(name: str) -> bool:
    if is_temp_name(name):
        return False
    return name.isprintable() or not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0
                                         for c in name)


def _expire(d: int, part: str, max_age: float, now: float) -> bool | None:
    """Remove the upload file ``part`` in ``d`` if it is older than ``max_age`` (< 0: any
    age) and no upload holds its lock: True when removed, None when there was none,
    False when it stays."""
    try:
        fd = os.open(part, _READ_FLAGS, dir_fd=d)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (max_age >= 0 and now - st.st_mtime <= max_age):
            return False
        if not _lock(fd):
            return False  # an upload is writing to it
        os.unlink(part, dir_fd=d)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep(root: str, max_age: float, now: float | None = None,
          ) -> tuple[int, list[str]]:
    """Start-up housekeeping: remove upload files (the reserved pattern) anywhere under
    ``root`` older than ``max_age`` seconds that no upload is writing to (left by a
    killed server, or abandoned by their clients). Returns how many were removed and the
    virtual paths (from ``root``) of those kept, to be expired later. Walks with
    ``os.fwalk`` (directory fds, symlinks never followed)."""
    now = time.time() if now is None else now
    removed = 0
    kept: list[str] = []
    base = os.path.realpath(root)
    for dirpath, _dirs, files, dfd in os.fwalk(base, follow_symlinks=False):
        for name in files:
            if not is_temp_name(name):
                continue
            gone = _expire(dfd, name, max_age, now)
            if gone:
                removed += 1
            elif gone is False:
                rel = os.path.relpath(os.path.join(dirpath, name), base)
                kept.append("/" + rel)
    return removed, kept


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open_regular(dfd: int, name: str, flags: int, what: str) -> int:
    """Open for writing without following a link; only a regular file with one link
    (writing through a hard link would change a file elsewhere)."""
    try:
        fd = os.open(name, flags, 0o644, dir_fd=dfd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StorageError(f"{what} is a symbolic link; uploads do not write through "
                               "links (STOR replaces the link)") from None
        if e.errno == errno.ENXIO:  # a FIFO with no reader
            raise StorageError(f"{what} is not a regular file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        raise StorageError(f"{what} is not a regular file" if not stat.S_ISREG(st.st_mode)
                           else f"{what} has other hard links; refusing to write to it")
    return fd


def _open_partial(dfd: int, part: str, vpath: str, create: bool) -> int | None:
    """The kept upload file for a name, locked for this upload; None when there is none
    (``create``: when it is busy). StorageError 450 when busy and not ``create``."""
    flags = _WRITE_FLAGS | (os.O_CREAT if create else 0)
    try:
        fd = _open_regular(dfd, part, flags, f"the upload file of {vpath}")
    except FileNotFoundError:
        return None
    except StorageError:
        if create:
            return None  # something odd under the reserved name: use a random one
        raise
    if _lock(fd):
        return fd
    os.close(fd)
    if create:
        return None
    raise StorageError(f"{vpath} is being uploaded by another session; try again when it "
                       "has finished", 450)


def _open_upload(dfd: int, own: bool, vpath: str, name: str, offset: int, append: bool,
                 unique: bool) -> Upload:
    try:
        try:
            target: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            target = None
        if target is not None and stat.S_ISDIR(target.st_mode):
            raise StorageError(f"{vpath} is a directory")
        part = partial_name(name)
        if append or offset:
            fd = _open_partial(dfd, part, vpath, create=False)
            if fd is not None:  # resume the kept upload
                size = os.fstat(fd).st_size
                if offset > size:
                    os.close(fd)
                    raise StorageError(f"restart offset {offset} is beyond the end of the "
                                       f"interrupted upload of {vpath} ({size} bytes)", 554)
                os.lseek(fd, size if append else offset, os.SEEK_SET)
                return Upload(fd, dfd, own, name, part, before=size, truncate=not append)
            if target is not None:  # continue the visible file in place
                fd = _open_regular(dfd, name, _WRITE_FLAGS | (os.O_APPEND if append else 0),
                                   vpath)
                size = os.fstat(fd).st_size
                if offset > size:
                    os.close(fd)
                    raise StorageError(f"restart offset {offset} is beyond the end of "
                                       f"{vpath} ({size} bytes)", 554)
                if not append:
                    os.lseek(fd, offset, os.SEEK_SET)
                return Upload(fd, dfd, own, name, None, before=size, truncate=not append)
            if offset:
                raise StorageError(f"restart offset {offset}: there is nothing to resume "
                                   f"(no file {vpath}, no interrupted upload of it)", 554)
        fd = None if unique else _open_partial(dfd, part, vpath, create=True)
        if fd is None:  # busy (or STOU): a name of its own, not resumable
            part = f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
            fd = os.open(part, _WRITE_FLAGS | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
            _lock(fd)
            return Upload(fd, dfd, own, name, part, before=-1, noreplace=unique,
                          resumable=False)
        os.ftruncate(fd, 0)
        return Upload(fd, dfd, own, name, part, before=-1)
    except OSError as e:
        raise _fail(vpath, e) from e


class Upload:
    """An open upload: ``commit()`` on success, ``discard(keep=...)`` on any failure.

    ``temp`` is the hidden file the data goes to (renamed to ``name`` at commit), None when
    a visible file is continued in place. ``before``: the size before this command (-1:
    the file is new), what a rolled-back failure returns to.
    """

    __slots__ = ("fd", "dfd", "own", "name", "temp", "before", "truncate", "noreplace",
                 "resumable", "done")

    def __init__(self, fd: int, dfd: int, own: bool, name: str, temp: str | None, *,
                 before: int, truncate: bool = False, noreplace: bool = False,
                 resumable: bool = True) -> None:
        self.fd, self.dfd, self.own, self.name, self.temp = fd, dfd, own, name, temp
        self.before = before
        #: REST+STOR: the file ends where the upload ended (cut only on success, so an
        #: aborted resume never shortens the file)
        self.truncate = truncate
        #: STOU: never replace a file that took the name meanwhile
        self.noreplace = noreplace
        #: a failed upload to this temp can be resumed (its name follows from the target)
        self.resumable = resumable and temp is not None
        self.done = False

    def commit(self) -> None:
        """The upload is complete: cut (REST+STOR), close, rename into place."""
        if self.done:
            return
        if self.truncate:
            os.ftruncate(self.fd, os.lseek(self.fd, 0, os.SEEK_CUR))
        os.close(self.fd)
        self.fd = -1
        if self.temp is not None:
            if self.noreplace:
                os.link(self.temp, self.name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd,
                        follow_symlinks=False)
                os.unlink(self.temp, dir_fd=self.dfd)
            else:
                os.rename(self.temp, self.name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
        self.done = True
        self._close_dir()

    def discard(self, *, keep: bool = False) -> bool:
        """The upload failed. ``keep``: leave what arrived (a hidden upload file stays to
        be resumed; a file continued in place keeps its new bytes). Otherwise everything
        goes back to how it was before the command: a new upload file is removed, a
        resumed one or a file continued in place is cut back to its size before.
        Returns whether an upload file was kept for resuming."""
        if self.done:
            return False
        self.done = True
        # a random upload name cannot be found again, an empty new one holds nothing
        rollback = not keep or (self.temp is not None and not self.resumable)
        if not rollback and self.before < 0:
            with suppress(OSError):
                rollback = os.fstat(self.fd).st_size == 0
        if rollback:
            with suppress(OSError):
                if self.before >= 0:
                    os.ftruncate(self.fd, self.before)
                elif self.temp is not None:
                    os.unlink(self.temp, dir_fd=self.dfd)
        if self.fd >= 0:
            with suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        self._close_dir()
        return not rollback and self.temp is not None

    def _close_dir(self) -> None:
        if self.own:
            self.own = False
            with suppress(OSError):
                os.close(self.dfd)
