"""Privileges: serve as an unprivileged user after binding as root (``run_as``).

Port 21 (and 990, and the active-mode source port 20) need root or
``CAP_NET_BIND_SERVICE`` to bind; nothing else the server does needs root. So with
``run_as`` the server binds its listeners and reads its certificate as root, then drops to
that user for good: supplementary groups, group, then user (real, effective and saved
ids alike), after which no id and no capability can be taken back, which is checked
before a single client is served. Every file operation then runs with that user's rights,
so a bug in path handling cannot reach what the user cannot.

One exception, only when asked for: with ``active.source_port`` below 1024 the dropped
process keeps ``CAP_NET_BIND_SERVICE`` (and nothing else), since every active-mode data
connection binds that port anew.

Serving as root beyond loopback without ``run_as`` is refused unless ``allow_root`` says
it is meant (see :func:`check_root`).
"""

from __future__ import annotations

import ctypes
import importlib
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable

from natftp.server.config import _MISSING, ConfigError, ListenAddress, RunAs

log = logging.getLogger("natftp.server")

_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38
_CAP_NET_BIND_SERVICE = 10
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _beyond_loopback(addrs: Iterable[ListenAddress]) -> list[ListenAddress]:
    return [la for la in addrs
            if not ipaddress.ip_address(la.host.split("%")[0]).is_loopback]


def check_root(run_as: RunAs | None, allow_root: bool,
               listen: Iterable[ListenAddress]) -> None:
    """Before binding: refuse to serve as root beyond loopback unless ``run_as`` drops
    the privileges or ``allow_root`` says serving as root is meant. Loopback-only is
    allowed (a local test server), and so is a non-root user."""
    if os.geteuid() != 0 or run_as is not None or allow_root:
        return
    beyond = _beyond_loopback(listen)
    if not beyond:
        return
    raise ConfigError(
        "run_as", _MISSING,
        f"natftp runs as root and would serve {beyond[0]} beyond loopback as root, so "
        "any flaw in path handling could reach the whole system",
        'set run_as = "USER[:GROUP]" (--run-as) to drop to that user after binding, or '
        "allow_root = true (--allow-root) to serve as root anyway")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(libc: ctypes.CDLL, option: int, arg: int) -> None:
    if libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                  ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _set_caps(libc: ctypes.CDLL, caps: int) -> None:
    """This thread's effective and permitted capability sets become ``caps`` (bits of the
    first 32 capabilities), the inheritable set empty."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(caps, caps, 0), _CapData(0, 0, 0))
    if libc.capset(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def status(pid: int | str = "self") -> dict[str, str]:
    """The fields of /proc/PID/status (Uid, Gid, Groups, CapEff, CapPrm, NoNewPrivs...)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


#: modules the server imports on first use, imported before the drop: the dropped user
#: may not be able to read the Python installation (one under /root, mode 0700). A
#: SIGHUP reload reads the configuration again (grp and pwd for run_as, argon2's
#: low-level check of every password_hash) and may read a new certificate.
PRELOAD = ("encodings.idna", "argon2", "argon2.exceptions", "argon2.low_level", "grp", "pwd",
           "cryptography.x509", "cryptography.hazmat.primitives.serialization")


def drop(run_as: RunAs, *, keep_bind: bool = False) -> str:
    """Become ``run_as`` for good; ``keep_bind``: keep CAP_NET_BIND_SERVICE alone.
    Verifies that root cannot be regained (OSError/ConfigError otherwise: the server
    must not serve). Returns a description for the log."""
    if os.geteuid() != 0:
        if os.getuid() == run_as.uid and os.getgid() == run_as.gid:
            return f"already running as {run_as} (uid {run_as.uid})"
        raise ConfigError("run_as", str(run_as), f"only root can switch users (natftp runs "
                          f"as uid {os.geteuid()})", "start natftp as root, or remove run_as")
    for name in PRELOAD:
        importlib.import_module(name)
    libc = _libc()
    if keep_bind:
        _prctl(libc, _PR_SET_KEEPCAPS, 1)
    os.setgroups(list(run_as.groups))
    os.setgid(run_as.gid)  # as root: real, effective and saved ids
    os.setuid(run_as.uid)
    if keep_bind:
        _set_caps(libc, 1 << _CAP_NET_BIND_SERVICE)
        _prctl(libc, _PR_SET_KEEPCAPS, 0)
    # no execve can give privileges back either (setuid binaries, file capabilities)
    _prctl(libc, _PR_SET_NO_NEW_PRIVS, 1)
    _verify(run_as, keep_bind)
    caps = "CAP_NET_BIND_SERVICE kept (active.source_port)" if keep_bind else "no capabilities"
    return (f"running as {run_as} (uid {run_as.uid}, gid {run_as.gid}, groups "
            f"{','.join(map(str, run_as.groups)) or 'none'}); {caps}")


def _verify(run_as: RunAs, keep_bind: bool) -> None:
    want_caps = (1 << _CAP_NET_BIND_SERVICE) if keep_bind else 0
    problems = []
    if os.getresuid() != (run_as.uid,) * 3 or os.getresgid() != (run_as.gid,) * 3:
        problems.append(f"ids are {os.getresuid()}/{os.getresgid()}")
    attempts: tuple[tuple[str, Callable[[], None]], ...] = (
        ("setuid(0)", lambda: os.setuid(0)), ("setgid(0)", lambda: os.setgid(0)),
        ("setgroups([0])", lambda: os.setgroups([0])))
    for attempt, call in attempts:
        try:
            call()
        except PermissionError:
            continue
        problems.append(f"{attempt} succeeded")
    # every thread of the process, not only this one
    for tid in os.listdir("/proc/self/task"):
        st = status(f"self/task/{tid}")
        uids = set(st["Uid"].split())
        if uids != {str(run_as.uid)} or set(st["Gid"].split()) != {str(run_as.gid)}:
            problems.append(f"thread {tid}: Uid {st['Uid']}, Gid {st['Gid']}")
        for field in ("CapEff", "CapPrm"):
            if int(st[field], 16) & ~want_caps:
                problems.append(f"thread {tid}: {field} {st[field]}")
    if problems:
        raise OSError(f"dropping privileges to {run_as} did not hold: "
                      + "; ".join(problems))
