"""Local-disk storage for one user's home, with the real-path check that stops symlinks.

:mod:`natftp.proto.paths` makes every client path a normalised virtual path inside the
home, lexically. Here the real file system joins in: a symlink inside the home may point
anywhere, so every access resolves the real path (``os.path.realpath``) and refuses it
unless it stays inside the real home. A path that does not exist yet (STOR, MKD) is
checked through its parent directory. Downloads first try a cheaper walk that follows no
symlink at all below the home (``openat`` with ``O_NOFOLLOW`` per component, from the
home's directory fd); anything else on the way falls back to the real-path check.

Metadata calls are plain blocking syscalls on purpose: on a local disk they take
microseconds, far less than a thread hand-off. File data moves by file descriptor (the
server's data path uses sendfile and recv_into on them).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import suppress

from natftp.proto import paths
from natftp.proto.listing import FileFacts

#: uploads are written to a hidden temporary name in the target directory
TEMP_PREFIX = ".natftp-upload-"
TEMP_SUFFIX = ".part"


class StorageError(Exception):
    """A refused or failed file operation; ``str(e)`` is fit for a 550 reply."""


class Escape(StorageError):
    """A path that leads outside the home (through a symlink)."""


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def _why(e: OSError) -> str:
    return e.strerror or str(e)


#: directory fds of homes (O_PATH), for :func:`_open_no_links`; one per distinct home
_HOME_FDS: dict[str, int] = {}
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO (or a device) must not wait for its other end and stall the
# event loop; it changes nothing for a regular file, and anything else is refused after
# fstat anyway
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_APPEND_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NONBLOCK
_UPDATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK


def _open_no_links(home: str, vpath: str) -> int | None:
    """The fast path of a download: open ``vpath`` for reading component by component
    from the home's directory fd, each with ``O_NOFOLLOW``, so no symlink is followed
    anywhere below the home: the file opened is inside it without a real-path check
    (one ``openat`` for a file in the home, instead of ``realpath``'s ``lstat`` per
    component of the whole path). None when that is not the case (a symlink on the way,
    a missing name, any error): the caller then takes the real-path check, which decides
    (and words the refusal) as before. The home's fd is opened once per home and kept:
    it is the directory the home named when first used.
    """
    parts = vpath.split("/")
    if len(parts) < 2 or not parts[-1]:
        return None
    dfd = _HOME_FDS.get(home)
    if dfd is None:
        try:
            dfd = os.open(home, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        _HOME_FDS[home] = dfd
    opened: list[int] = []
    try:
        for name in parts[1:-1]:
            if name in ("", ".", ".."):
                return None
            dfd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            opened.append(dfd)
        if parts[-1] in (".", ".."):
            return None
        return os.open(parts[-1], _READ_FLAGS, dir_fd=dfd)
    except OSError:
        return None
    finally:
        for fd in opened:
            os.close(fd)


class LocalStorage:
    """One user's view of the disk: virtual paths under ``home`` (a real directory)."""

    __slots__ = ("home",)

    def __init__(self, home: str) -> None:
        self.home = os.path.realpath(home)

    # -- mapping -------------------------------------------------------------------

    def real(self, vpath: str, *, must_exist: bool = True) -> str:
        """The real path of ``vpath`` after checking that it stays inside the home.

        ``must_exist=False`` allows a missing final component (for creation); its parent
        must exist and is what gets checked.
        """
        lexical = paths.to_real(self.home, vpath)
        resolved = os.path.realpath(lexical)
        if not paths.within(self.home, resolved):
            raise Escape(f"{vpath} leads outside the home directory (symlink)")
        if must_exist and not os.path.lexists(resolved):
            raise StorageError(f"{vpath}: no such file or directory")
        if not must_exist:
            par = os.path.dirname(resolved)
            if not os.path.isdir(par):
                raise StorageError(f"{paths.parent(vpath)}: no such directory")
        return resolved

    # -- metadata ------------------------------------------------------------------

    def stat(self, vpath: str) -> os.stat_result:
        try:
            return os.stat(self.real(vpath))
        except OSError as e:
            raise StorageError(f"{vpath}: {_why(e)}") from e

    def facts(self, vpath: str) -> FileFacts:
        return FileFacts.from_stat(paths.basename(vpath) or "/", self.stat(vpath))

    def is_dir(self, vpath: str) -> bool:
        try:
            return os.path.isdir(self.real(vpath))
        except StorageError:
            return False

    def listdir(self, vpath: str) -> Iterator[FileFacts]:
        """Entries of a directory; entries that escape or vanish are left out."""
        real = self.real(vpath)
        try:
            names = sorted(os.listdir(real))
        except OSError as e:
            raise StorageError(f"{vpath}: {_why(e)}") from e
        for name in names:
            if is_temp_name(name):
                continue
            full = os.path.join(real, name)
            try:
                target = os.path.realpath(full)
                if not paths.within(self.home, target):
                    continue
                st = os.stat(full)
            except OSError:
                continue
            yield FileFacts.from_stat(name, st)

    # -- changes -------------------------------------------------------------------

    def mkdir(self, vpath: str) -> None:
        real = self.real(vpath, must_exist=False)
        try:
            os.mkdir(real, 0o755)
        except OSError as e:
            raise StorageError(f"{vpath}: {_why(e)}") from e

    def rmdir(self, vpath: str) -> None:
        if vpath == "/":
            raise StorageError("the home directory cannot be removed")
        real = self.real(vpath)
        try:
            os.rmdir(real)
        except OSError as e:
            raise StorageError(f"{vpath}: {_why(e)}") from e

    def remove(self, vpath: str) -> None:
        real = self.real(vpath)
        if os.path.isdir(real):
            raise StorageError(f"{vpath} is a directory (use RMD)")
        try:
            os.unlink(real)
        except OSError as e:
            raise StorageError(f"{vpath}: {_why(e)}") from e

    def rename(self, src: str, dst: str) -> None:
        if src == "/" or dst == "/":
            raise StorageError("the home directory cannot be renamed")
        # the source itself may be a symlink: rename the link, never its target
        src_real = os.path.join(self.real(paths.parent(src)), paths.basename(src))
        if not os.path.lexists(src_real):
            raise StorageError(f"{src}: no such file or directory")
        dst_real = self.real(dst, must_exist=False)
        try:
            os.rename(src_real, dst_real)
        except OSError as e:
            raise StorageError(f"{src} -> {dst}: {_why(e)}") from e

    def set_mtime(self, vpath: str, mtime: float) -> None:
        real = self.real(vpath)
        try:
            os.utime(real, (mtime, mtime))
        except OSError as e:
            raise StorageError(f"{vpath}: {_why(e)}") from e

    def chmod(self, vpath: str, mode: int) -> None:
        """Set the permission bits of ``vpath`` (SITE CHMOD). The name is changed from
        its parent directory's fd without following a symlink (``fchmodat`` with
        ``AT_SYMLINK_NOFOLLOW``): a symlink is refused, never its target changed."""
        if vpath == "/":
            raise StorageError("the home directory's permissions cannot be changed")
        name = paths.basename(vpath)
        try:
            dfd = os.open(self.real(paths.parent(vpath)), _DIR_FLAGS)
        except OSError as e:
            raise StorageError(f"{paths.parent(vpath)}: {_why(e)}") from e
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                raise StorageError(f"{vpath} is a symbolic link; change its target instead")
            os.chmod(name, mode, dir_fd=dfd, follow_symlinks=False)
        except (ValueError, NotImplementedError) as e:
            # the name became a symlink since the check (glibc refuses, EOPNOTSUPP)
            raise StorageError(f"{vpath} is a symbolic link; change its target "
                               "instead") from e
        except OSError as e:
            raise StorageError(f"{vpath}: {_why(e)}") from e
        finally:
            os.close(dfd)

    # -- file data -----------------------------------------------------------------

    def open_read(self, vpath: str) -> tuple[int, int]:
        """(fd, size) of a regular file, opened for reading."""
        fd = _open_no_links(self.home, vpath)
        if fd is None:
            real = self.real(vpath)
            try:
                fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError as e:
                raise StorageError(f"{vpath}: {_why(e)}") from e
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise StorageError(f"{vpath} is not a regular file")
        return fd, st.st_size

    def open_write(self, vpath: str, *, offset: int = 0, append: bool = False,
                   ) -> Upload:
        """Open an upload.

        A plain STOR writes to a temporary name beside the target and renames it into
        place on success, so an aborted upload never truncates a good file. REST+STOR
        and APPE mean "continue this file" and write in place.
        """
        real = self.real(vpath, must_exist=False)
        if os.path.isdir(real):
            raise StorageError(f"{vpath} is a directory")
        try:
            if append or offset:
                # in place: a FIFO with no reader fails with ENXIO instead of blocking
                try:
                    fd = os.open(real, _APPEND_FLAGS if append else _UPDATE_FLAGS, 0o644)
                except OSError as e:
                    if e.errno == errno.ENXIO:
                        raise StorageError(f"{vpath} is not a regular file") from e
                    raise
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    os.close(fd)
                    raise StorageError(f"{vpath} is not a regular file")
            if append:
                return Upload(fd, real, None)
            if offset:
                size = st.st_size
                if offset > size:
                    os.close(fd)
                    raise StorageError(f"restart offset {offset} is beyond the end of "
                                       f"{vpath} ({size} bytes)")
                os.lseek(fd, offset, os.SEEK_SET)
                return Upload(fd, real, None, truncate=True)
            tmp = os.path.join(os.path.dirname(real),
                               f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            return Upload(fd, real, tmp)
        except OSError as e:
            raise StorageError(f"{vpath}: {_why(e)}") from e

    def unique_name(self, vdir: str, stem: str) -> str:
        """A virtual path in ``vdir`` that does not exist yet (STOU)."""
        for _ in range(100):
            cand = paths.resolve(vdir, f"{stem}.{secrets.token_hex(4)}")
            if not os.path.lexists(self.real(cand, must_exist=False)):
                return cand
        raise StorageError("could not find a unique name")


class Upload:
    """An open upload: ``commit()`` on success, ``discard()`` on any failure."""

    __slots__ = ("fd", "final", "temp", "truncate", "_done")

    def __init__(self, fd: int, final: str, temp: str | None, truncate: bool = False) -> None:
        self.fd, self.final, self.temp = fd, final, temp
        #: REST+STOR: the file ends where the upload ended (cut only on success, so an
        #: aborted resume never shortens the file)
        self.truncate = truncate
        self._done = False

    def commit(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            if self.truncate:
                os.ftruncate(self.fd, os.lseek(self.fd, 0, os.SEEK_CUR))
        finally:
            os.close(self.fd)
        if self.temp is not None:
            os.replace(self.temp, self.final)

    def discard(self) -> None:
        """Close; a temporary file is removed (the file it would replace is untouched)."""
        if self._done:
            return
        self._done = True
        with suppress(OSError):
            os.close(self.fd)
        if self.temp is not None:
            with suppress(OSError):
                os.unlink(self.temp)
