"""Server configuration: one TOML file, validated at start, every option with a default.

:func:`load` reads a file, :func:`from_dict` validates a dict of the same shape (the CLI
turns its flags into that dict, so a bad flag and a bad key get the same kind of error).
A problem raises :class:`ConfigError` naming the key, the value and the fix; the server
does not start. ``docs/server.md`` documents every key.

Every key can also come from the environment as ``NATFTP_<SECTION>_<KEY>``
(:func:`apply_env`): the file is read first, the environment overrides it, command-line
flags override both. ``ServerConfig.sources`` records where each set key came from
(``serve --explain`` prints it).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natftp.nat.policy import IPNetwork, Override
from natftp.nat.ports import DEFAULT_CONTROL_PORT
from natftp.proto import paths
from natftp.proto.addr import IPAddress
from natftp.proto.hostport import HostPortError, PortRangeError
from natftp.proto.hostport import format_port_range as format_range
from natftp.proto.hostport import parse_listen as parse_listen_address
from natftp.proto.hostport import parse_port_range as parse_range
from natftp.storage.s3 import S3Settings, clean_prefix

DEFAULT_LISTEN = f"[::]:{DEFAULT_CONTROL_PORT}"
DEFAULT_BANNER = "natftp ready."
PERMISSIONS = ("list", "read", "write", "delete", "rename", "mkdir", "chmod")

#: CLI flags that set a key (named in errors so the user knows which to change)
FLAGS = {
    "root": "ROOT", "listen": "--listen", "read_only": "--read-only",
    "anonymous.enabled": "--anonymous", "passive.ports": "--passive-ports",
    "nat.masquerade": "--masquerade", "log_level": "--log-level",
    "tls.enabled": "--tls", "tls.cert": "--tls-cert", "tls.key": "--tls-key",
    "tls.listen_implicit": "--listen-implicit", "tls.ccc": "--tls-ccc",
    "tls.required": "--tls-required", "tls.state_dir": "--state-dir",
    "tls.require_session_reuse": "--tls-require-session-reuse",
    "nat.port_mapping": "--open-router", "nat.stun_servers": "--stun",
    "proxy_protocol.trusted": "--proxy-protocol-from",
    "run_as": "--run-as", "allow_root": "--allow-root",
    "status.listen": "--status-listen", "log.file": "--log-file",
    "log.format": "--log-format", "log.xferlog": "--xferlog",
    "storage.backend": "--storage", "storage.s3.bucket": "--storage",
    "storage.s3.prefix": "--storage",
    "storage.s3.endpoint": "--s3-endpoint",
}


class ConfigError(Exception):
    """One configuration problem: the key, the value, what is wrong and the fix."""

    def __init__(self, key: str, value: object, problem: str, fix: str, *,
                 origin: str | None = None) -> None:
        self.key, self.value, self.problem, self.fix = key, value, problem, fix
        #: where the value was set when that is not the file (a flag, a variable)
        self.origin = origin or FLAGS.get(key)
        flag = f" ({self.origin})" if self.origin else ""
        shown = _masked(key, value)
        super().__init__(f"{key}{flag} = {shown}: {problem}; fix: {fix}")


#: words in a key's name that make its value a secret: an error shows it masked
_SECRET_KEYS = ("password", "passwd", "pass", "pw", "pwd", "secret", "token")


def _masked(key: str, value: object) -> str:
    """How an error shows ``value``: a password never appears (errors end up in terminals,
    logs and bug reports); of an argon2 hash only the parameters (what tells a placeholder
    from a real hash), not the salt or the digest. The key's words are looked at, so
    ``users[0].password``, ``NATFTP_PASSWORD`` (a variable that is not a setting) and
    ``password_hash`` are masked and ``passive.ports`` is not."""
    last = key.rsplit(".", 1)[-1].lower()
    if last == "password_hash" and isinstance(value, str) and value.startswith("$argon2"):
        params = value.split("$")[:4]  # "", "argon2id", "v=19", "m=...,t=...,p=..."
        return _show("$".join(params) + "$****")
    if any(w in _SECRET_KEYS for w in re.split(r"[^a-z]+", key.lower())):
        return "(missing)" if value is _MISSING else "****"
    return _show(value)


def _show(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is _MISSING:
        return "(missing)"
    return repr(value)


_MISSING = object()


@dataclass(frozen=True, slots=True)
class Permissions:
    list: bool = True
    read: bool = True
    write: bool = True
    delete: bool = True
    rename: bool = True
    mkdir: bool = True
    #: SITE CHMOD (issue 16); in a [[users]] table it defaults to that user's ``write``
    chmod: bool = True

    @classmethod
    def read_only(cls) -> Permissions:
        return cls(write=False, delete=False, rename=False, mkdir=False, chmod=False)


@dataclass(frozen=True, slots=True)
class User:
    """A login. ``password_hash`` (argon2, from a config file) or ``password`` (plain,
    from ``--user`` on the command line; never written anywhere)."""

    name: str
    home: Path
    permissions: Permissions = field(default_factory=Permissions)
    password_hash: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    #: this user's ``tls.required`` (None: the server's applies)
    tls_required: str | None = None


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Timeouts:
    idle: float = 300.0
    data: float = 30.0
    login_failure_delay: float = 1.0
    #: a session not logged in this long after connecting is closed (issue 21)
    login: float = 60.0
    #: a command line must be complete this long after its first byte (slowloris)
    line: float = 30.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_sessions: int = 10000
    max_sessions_per_ip: int = 64
    max_line: int = 4096
    max_login_attempts: int = 3
    #: password checks (argon2) run at once in their own threads, and how many more
    #: may wait for one; beyond that a login gets 421 "busy"
    login_workers: int = 2
    login_queue: int = 16
    #: ban an address after this many failed logins within ban_window seconds, for
    #: ban_time seconds (0: no bans); networks in ban_exempt are never banned
    ban_after: int = 10
    ban_window: float = 600.0
    ban_time: float = 900.0
    ban_exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: passive ports one client address may hold waiting for a data connection
    max_passive_per_ip: int = 16


@dataclass(frozen=True, slots=True)
class ZeroconfConfig:
    """Zero-config NAT (issue 8; ``docs/zeroconf.md``): discovery and port mapping."""

    #: nat.masquerade = "auto" (explicit, or the default when serving beyond loopback)
    discover: bool = False
    #: why discovery is on or off, for the start-up log
    reason: str = "nat.masquerade is not auto"
    sources: tuple[str, ...] = ("upnp", "natpmp", "pcp", "metadata", "stun")
    stun_servers: tuple[str, ...] = ()
    discovery_timeout: float = 3.0
    recheck_interval: float = 300.0
    #: nat.port_mapping = "auto" (--open-router)
    port_mapping: bool = False
    mapping_protocols: tuple[str, ...] = ("upnp", "pcp", "natpmp")
    mapping_lease: int = 3600
    mapping_stop_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class NatConfig:
    masquerade: str | None = None
    overrides: tuple[Override, ...] = ()
    advertised_ports: tuple[int, int] | None = None
    refresh_interval: float = 300.0
    zeroconf: ZeroconfConfig = field(default_factory=ZeroconfConfig)


@dataclass(frozen=True, slots=True)
class ActiveConfig:
    source_port: int = 0
    allow_foreign_address: bool = False
    allow_low_ports: bool = False


@dataclass(frozen=True, slots=True)
class Anonymous:
    enabled: bool = False
    home: Path | None = None


#: tls.required values: what must be protected before what is allowed
TLS_REQUIRED = ("off", "control", "data")


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """``[tls]``: FTPS (see docs/server.md). ``required`` is "off", "control" (AUTH TLS
    before USER) or "data" (that, and PROT P before any transfer)."""

    enabled: bool = False
    cert: Path | None = None
    key: Path | None = None
    state_dir: Path | None = None
    listen_implicit: tuple[ListenAddress, ...] = ()
    required: str = "off"
    require_session_reuse: bool = False
    ccc: bool = False
    min_version: str = "1.2"


@dataclass(frozen=True, slots=True)
class ProxyProtocolConfig:
    """``[proxy_protocol]``: PROXY protocol v1/v2 headers from trusted balancers (issue
    18). Empty ``trusted``: off (no connection may send one)."""

    trusted: tuple[IPNetwork, ...] = ()
    #: how long a trusted source has to send its header before the connection is closed
    header_timeout: float = 5.0
    #: how long a passive data connection from a trusted source that has not yet been
    #: seen sending a header on one is given to send it (once learnt, see docs/server.md)
    data_header_wait: float = 1.0

    def trusts(self, addr: IPAddress) -> bool:
        return any(addr.version == n.version and addr in n for n in self.trusted)


@dataclass(frozen=True, slots=True)
class Uploads:
    """``[uploads]``: what happens to an upload that did not complete."""

    #: seconds an interrupted upload is kept (hidden) to be resumed; 0: removed at once
    partial_max_age: float = 86400.0


@dataclass(frozen=True, slots=True)
class RunAs:
    """``run_as``: the user (and group) the server drops to after binding."""

    user: str
    group: str
    uid: int
    gid: int
    #: supplementary groups (the user's, from the group database)
    groups: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"{self.user}:{self.group}"


@dataclass(frozen=True, slots=True)
class StatusConfig:
    """``[status]`` (issue 20, ``docs/operations.md``): the HTTP listener for the status
    page (``/``) and Prometheus metrics (``/metrics``). Off unless ``listen`` is set."""

    listen: ListenAddress | None = None
    #: seconds between the status page's own refreshes
    refresh: float = 5.0


#: log.format values
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class LogConfig:
    """``[log]`` (issue 20): where the log goes and in which form, and the xferlog."""

    #: None: stderr; else a file, reopened on SIGUSR1 (logrotate)
    file: Path | None = None
    format: str = "text"
    #: the wu-ftpd transfer log (one line per file transfer); None: none
    xferlog: Path | None = None


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where files live: "local" (ROOT on disk) or "s3" (a bucket, ``s3``)."""

    backend: str = "local"
    s3: S3Settings | None = None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The validated, effective configuration (see ``docs/server.md``)."""

    root: Path
    listen: tuple[ListenAddress, ...] = ()
    users: tuple[User, ...] = ()
    anonymous: Anonymous = field(default_factory=Anonymous)
    read_only: bool = False
    passive_ports: tuple[int, int] | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    banner: str = DEFAULT_BANNER
    nat: NatConfig = field(default_factory=NatConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)
    log_level: str = "info"
    tls: TLSConfig = field(default_factory=TLSConfig)
    proxy_protocol: ProxyProtocolConfig = field(default_factory=ProxyProtocolConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    log: LogConfig = field(default_factory=LogConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    #: (dotted key, value as given, where it came from) for every key that was set
    sources: tuple[tuple[str, Any, str], ...] = ()
    uploads: Uploads = field(default_factory=Uploads)
    #: drop to this user after binding (None: stay who started the server)
    run_as: RunAs | None = None
    #: serve as root beyond loopback without run_as
    allow_root: bool = False

    def user(self, name: str) -> User | None:
        for u in self.users:
            if u.name == name:
                return u
        return None


# -- parsing helpers -----------------------------------------------------------------

def parse_listen(text: str, key: str = "listen") -> ListenAddress:
    """``HOST:PORT``, ``[v6]:PORT``, a bare ``v6:PORT`` (``:::2121``), ``:PORT`` or
    ``PORT``: the rule the gateway's ``--listen`` follows too (proto.hostport)."""
    try:
        host, port = parse_listen_address(text)
    except HostPortError as e:
        raise ConfigError(key, text, e.reason, e.fix or 'e.g. "[::]:2121"') from None
    return ListenAddress(host, port)


def _range(key: str, value: object) -> tuple[int, int]:
    if not isinstance(value, str):
        raise ConfigError(key, value, "expected a string LOW-HIGH", 'e.g. "30000-30099"')
    try:
        return parse_range(value)
    except PortRangeError as e:
        raise ConfigError(key, value, str(e), 'write LOW-HIGH with 1 <= LOW <= HIGH <= '
                          '65535, e.g. "30000-30099"') from None


_TYPE_NAMES = {bool: "a boolean (true/false)", int: "an integer", str: "a string",
               float: "a number", list: "a list", dict: "a table"}


def _typed(key: str, value: object, typ: type, fix: str = "") -> Any:
    if isinstance(value, EnvText):
        value = value.as_type(typ)
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(key, value, f"expected {_TYPE_NAMES[typ]}, got "
                          f"{type(value).__name__}", fix or f"give {key} {_TYPE_NAMES[typ]}")
    return value


def _check_keys(prefix: str, table: Mapping[str, object], known: tuple[str, ...]) -> None:
    for k, v in table.items():
        if k not in known:
            full = f"{prefix}{k}"
            if "password_hash" in known and k.lower() in _SECRET_KEYS:
                raise ConfigError(full, v, "plain passwords are not accepted in the file",
                                  "run `natftp passwd`, write its output as "
                                  f"{prefix}password_hash and remove {full}")
            near = difflib.get_close_matches(k, known, 1)
            fix = (f"did you mean {prefix}{near[0]}?" if near else
                   f"remove it (known keys here: {', '.join(known)})")
            raise ConfigError(full, v, "unknown key", fix)


def _positive(key: str, value: float, *, zero_ok: bool = False) -> float:
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(key, value, "must be positive" + (" or 0" if zero_ok else ""),
                          f"set {key} to a value above 0")
    return value


def _home(key: str, value: object, root: Path, *, local: bool = True) -> Path:
    text = _typed(key, value, str)
    if "\0" in text:
        raise ConfigError(key, value, "contains a NUL byte", "use a plain directory name")
    if not local:
        # object storage: a key prefix below s3.prefix, kept as ROOT/<prefix> (the
        # session takes it relative to ROOT again); nothing to find on the disk
        try:
            rel = clean_prefix(text.lstrip("/"))
        except ValueError as e:
            raise ConfigError(key, value, str(e), 'give a prefix such as "alice" or '
                              '"users/alice"') from None
        return root / rel if rel else root
    p = Path(text)
    candidate = p if p.is_absolute() else root / p
    real = Path(os.path.realpath(candidate))
    if not paths.within(str(root), str(real)):
        raise ConfigError(key, value, f"the home {real} is outside ROOT {root}",
                          "give a directory inside ROOT (relative to it, e.g. \"alice\")")
    if not real.is_dir():
        raise ConfigError(key, value, f"{real} is not an existing directory",
                          f"create it (mkdir -p {real}) or point {key} elsewhere")
    return real


# -- the whole file ------------------------------------------------------------------

_TOP = ("root", "listen", "read_only", "banner", "log_level", "passive", "anonymous",
        "timeouts", "limits", "users", "nat", "active", "tls", "proxy_protocol", "uploads",
        "run_as", "allow_root", "status", "log", "storage")
_LOG_LEVELS = ("debug", "info", "warning", "error")


def load(path: str | os.PathLike[str], *, overrides: Mapping[str, Any] | None = None,
         env: Mapping[str, str] | None = None) -> ServerConfig:
    """Read and validate a TOML file; ``env`` (``os.environ`` when serving) is laid over
    it, ``overrides`` (dotted keys from the CLI) over both. A reload must pass the same
    ``env`` and ``overrides`` to get the same configuration from the same file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("--config", str(path), f"cannot read it ({e.strerror})",
                          "give the path of a readable TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--config", str(path), f"not valid TOML ({e})",
                          "fix the syntax at the position shown") from None
    return from_dict(data, overrides=overrides, base_dir=Path(path).resolve().parent,
                     env=env, origin=f"file {path}")


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *heads, last = key.split(".")
    d = data
    for h in heads:
        d = d.setdefault(h, {})
    d[last] = value


def from_dict(data: Mapping[str, Any], *, overrides: Mapping[str, Any] | None = None,
              base_dir: Path | None = None, env: Mapping[str, str] | None = None,
              origin: str = "file") -> ServerConfig:
    """Validate a configuration dict (the TOML file's shape), with the ``NATFTP_*``
    variables of ``env`` and then ``overrides`` laid over it."""
    sources = {k: origin for k in _leaf_keys(data)}
    raw, from_env = apply_env(data, env or {})
    sources.update({k: f"environment {var}" for k, var in from_env.items()})
    for k, v in (overrides or {}).items():
        set_dotted(raw, k, v)
        sources[k] = f"flag {FLAGS[k]}" if k in FLAGS else "command line"
    try:
        cfg = _from_raw(raw, base_dir)
    except ConfigError as e:
        where = _origin_of(e.key, sources)
        if where is None or not where.startswith("environment"):
            raise
        raise ConfigError(e.key, e.value, e.problem, e.fix,
                          origin=where.split(" ", 1)[1]) from None
    return dataclasses.replace(cfg, sources=tuple(
        (k, get_dotted(raw, k), sources[k]) for k in sorted(sources)))


def _origin_of(key: str, sources: Mapping[str, str]) -> str | None:
    """Where the key of an error (maybe deeper: ``nat.overrides[0].address``) was set."""
    best = None
    for k, where in sources.items():
        if key == k or key.startswith((k + ".", k + "[")):
            if best is None or len(k) > len(best[0]):
                best = (k, where)
    return best[1] if best else None


def _leaf_keys(data: Mapping[str, Any]) -> list[str]:
    """The dotted keys a file sets: top-level values and each key of a top-level table."""
    out = []
    for k, v in data.items():
        if isinstance(v, dict) and v:
            out += [f"{k}.{sub}" for sub in v]
        else:
            out.append(k)
    return out


def get_dotted(data: Mapping[str, Any], key: str) -> Any:
    d: Any = data
    for part in key.split("."):
        d = d[part]
    return d


def _from_raw(raw: dict[str, Any], base_dir: Path | None) -> ServerConfig:
    _check_keys("", raw, _TOP)

    root_v = raw.get("root", ".")
    root_s = _typed("root", root_v, str)
    root_p = Path(root_s)
    if not root_p.is_absolute():
        root_p = (base_dir or Path.cwd()) / root_p
    root = Path(os.path.realpath(root_p))
    if not root.is_dir():
        raise ConfigError("root", root_v, f"{root} is not an existing directory",
                          f"create it (mkdir -p {root}) or serve another directory")

    listen_v = raw.get("listen", [DEFAULT_LISTEN])
    if isinstance(listen_v, str) and not isinstance(listen_v, EnvText):
        listen_v = [listen_v]
    listen_v = _typed("listen", listen_v, list)
    if not listen_v:
        raise ConfigError("listen", listen_v, "no address to listen on",
                          f'give at least one, e.g. ["{DEFAULT_LISTEN}"]')
    listen = tuple(parse_listen(_typed("listen", x, str)) for x in listen_v)
    seen: set[tuple[str, int]] = set()
    for la in listen:
        where = (str(ipaddress.ip_address(la.host.split("%")[0])), la.port)
        if where in seen and la.port != 0:
            raise ConfigError("listen", str(la), "given twice", "remove the duplicate")
        seen.add(where)

    read_only = _typed("read_only", raw.get("read_only", False), bool)
    banner = _typed("banner", raw.get("banner", DEFAULT_BANNER), str)
    if not banner.strip():
        raise ConfigError("banner", banner, "empty", "write a line of text")
    log_level = _typed("log_level", raw.get("log_level", "info"), str).lower()
    if log_level not in _LOG_LEVELS:
        raise ConfigError("log_level", log_level, "unknown level",
                          f"use one of {', '.join(_LOG_LEVELS)}")

    tls = _tls(_typed("tls", raw.get("tls", {}), dict), base_dir or Path.cwd())
    for la in tls.listen_implicit:
        where = (str(ipaddress.ip_address(la.host.split("%")[0])), la.port)
        if where in seen and la.port != 0:
            raise ConfigError("tls.listen_implicit", str(la), "also a plain listen address",
                              "give implicit TLS its own port (conventionally 990)")
        seen.add(where)

    passive = _typed("passive", raw.get("passive", {}), dict)
    _check_keys("passive.", passive, ("ports",))
    pasv_range = _range("passive.ports", passive["ports"]) if "ports" in passive else None
    if pasv_range is not None:
        for la in listen + tls.listen_implicit:
            if pasv_range[0] <= la.port <= pasv_range[1]:
                raise ConfigError("passive.ports", format_range(pasv_range),
                                  f"overlaps the control port {la.port} of listen {la}",
                                  "choose a passive range that excludes the listen ports")
        if pasv_range[0] < 1024:
            raise ConfigError("passive.ports", format_range(pasv_range),
                              "includes privileged ports below 1024",
                              'use high ports, e.g. "30000-30099"')

    timeouts_t = _typed("timeouts", raw.get("timeouts", {}), dict)
    _check_keys("timeouts.", timeouts_t, ("idle", "data", "login_failure_delay", "login",
                                          "line"))
    d = Timeouts()
    timeouts = Timeouts(
        idle=_positive("timeouts.idle", _typed("timeouts.idle",
                                               timeouts_t.get("idle", d.idle), float)),
        data=_positive("timeouts.data", _typed("timeouts.data",
                                               timeouts_t.get("data", d.data), float)),
        login_failure_delay=_positive(
            "timeouts.login_failure_delay",
            _typed("timeouts.login_failure_delay",
                   timeouts_t.get("login_failure_delay", d.login_failure_delay), float),
            zero_ok=True),
        login=_positive("timeouts.login", _typed("timeouts.login",
                                                 timeouts_t.get("login", d.login), float)),
        line=_positive("timeouts.line", _typed("timeouts.line",
                                               timeouts_t.get("line", d.line), float)))

    limits = _limits(_typed("limits", raw.get("limits", {}), dict))

    anon_v = raw.get("anonymous", {})
    if isinstance(anon_v, bool):
        anon_v = {"enabled": anon_v}
    anon_t = _typed("anonymous", anon_v, dict)
    _check_keys("anonymous.", anon_t, ("enabled", "home"))
    storage = _storage(_typed("storage", raw.get("storage", {}), dict))
    local = storage.backend == "local"
    anonymous = Anonymous(
        enabled=_typed("anonymous.enabled", anon_t.get("enabled", False), bool),
        home=(_home("anonymous.home", anon_t["home"], root, local=local)
              if "home" in anon_t else None))

    users_v = _typed("users", raw.get("users", []), list)
    users: list[User] = []
    for i, u in enumerate(users_v):
        users.append(_user(f"users[{i}]", u, root, local=local))
    names = [u.name for u in users]
    for n in names:
        if names.count(n) > 1:
            raise ConfigError("users", n, "user defined twice", "keep one [[users]] entry "
                              "per name")

    for i, u in enumerate(users):
        if u.tls_required not in (None, "off") and not tls.enabled:
            raise ConfigError(f"users[{i}].tls.required", u.tls_required, "TLS is off",
                              "turn TLS on: tls.enabled = true (--tls) or tls.cert")

    nat = _nat(_typed("nat", raw.get("nat", {}), dict), pasv_range, listen)
    active = _active(_typed("active", raw.get("active", {}), dict))
    proxy = _proxy_protocol(_typed("proxy_protocol", raw.get("proxy_protocol", {}), dict))

    status = _status(_typed("status", raw.get("status", {}), dict), seen)
    log_cfg = _log(_typed("log", raw.get("log", {}), dict), base_dir or Path.cwd())

    return ServerConfig(root=root, listen=listen, users=tuple(users), anonymous=anonymous,
                        read_only=read_only, passive_ports=pasv_range, timeouts=timeouts,
                        limits=limits, banner=banner, nat=nat, active=active,
                        log_level=log_level, tls=tls, proxy_protocol=proxy, status=status,
                        log=log_cfg,
                        uploads=_uploads(_typed("uploads", raw.get("uploads", {}), dict)),
                        run_as=(_run_as(raw["run_as"]) if raw.get("run_as") is not None
                                else None),
                        allow_root=_typed("allow_root", raw.get("allow_root", False), bool),
                        storage=storage)


def _uploads(t: dict[str, Any]) -> Uploads:
    _check_keys("uploads.", t, ("partial_max_age",))
    age = _positive("uploads.partial_max_age", _typed(
        "uploads.partial_max_age", t.get("partial_max_age", Uploads().partial_max_age),
        float), zero_ok=True)
    return Uploads(partial_max_age=age)


def _run_as(value: object) -> RunAs:
    """``"USER[:GROUP]"`` (names or numbers) -> the ids, checked against the system's
    user and group databases now, so a typo stops the server before it binds."""
    import grp
    import pwd

    text = _typed("run_as", value, str).strip()
    user, sep, group = text.partition(":")
    if not user or (sep and not group):
        raise ConfigError("run_as", value, "not USER[:GROUP]", 'e.g. "ftp" or "ftp:ftp"')
    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, OverflowError):
        raise ConfigError("run_as", value, f"no user {user!r} on this system",
                          "name an existing unprivileged user, or create one "
                          "(useradd --system --no-create-home --shell /usr/sbin/nologin "
                          "natftp)") from None
    gid = pw.pw_gid
    if group:
        try:
            gr = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
        except (KeyError, OverflowError):
            raise ConfigError("run_as", value, f"no group {group!r} on this system",
                              "name an existing group, or leave it out (the user's "
                              "primary group)") from None
        gid = gr.gr_gid
    if pw.pw_uid == 0 or gid == 0:
        raise ConfigError("run_as", value, "names root (uid or gid 0), which drops nothing",
                          "name an unprivileged user, or remove run_as and set "
                          "allow_root = true")
    try:
        group_name = grp.getgrgid(gid).gr_name
    except KeyError:
        group_name = str(gid)
    groups = tuple(g for g in os.getgrouplist(pw.pw_name, gid) if g != 0)
    return RunAs(user=pw.pw_name, group=group_name, uid=pw.pw_uid, gid=gid, groups=groups)


_LIMIT_INTS = ("max_sessions", "max_sessions_per_ip", "max_line", "max_login_attempts",
               "login_workers", "login_queue", "ban_after", "max_passive_per_ip")
#: integer limits where 0 means "no limit" / "off"
_ZERO_OK = ("max_sessions_per_ip", "login_queue", "ban_after", "max_passive_per_ip")


def _limits(t: dict[str, Any]) -> Limits:
    _check_keys("limits.", t, (*_LIMIT_INTS, "ban_window", "ban_time", "ban_exempt"))
    dl = Limits()
    vals: dict[str, Any] = {}
    for k in _LIMIT_INTS:
        v = _typed(f"limits.{k}", t.get(k, getattr(dl, k)), int)
        _positive(f"limits.{k}", v, zero_ok=k in _ZERO_OK)
        vals[k] = v
    if vals["max_line"] < 512:
        raise ConfigError("limits.max_line", vals["max_line"], "below 512 bytes",
                          "RFC 959 lines can be long paths; use at least 512")
    if vals["login_workers"] > 64:
        raise ConfigError("limits.login_workers", vals["login_workers"], "above 64",
                          "each check takes an argon2 hash's memory (64 MiB by default); "
                          "use about the number of CPU cores")
    for k in ("ban_window", "ban_time"):
        vals[k] = _positive(f"limits.{k}", _typed(f"limits.{k}", t.get(k, getattr(dl, k)),
                                                  float))
    exempt = []
    for n in _typed("limits.ban_exempt", t.get("ban_exempt", []), list):
        try:
            exempt.append(ipaddress.ip_network(_typed("limits.ban_exempt", n, str),
                                               strict=False))
        except ValueError:
            raise ConfigError("limits.ban_exempt", n, "not a network",
                              'write CIDR, e.g. ["127.0.0.0/8", "::1/128"]') from None
    vals["ban_exempt"] = tuple(exempt)
    return Limits(**vals)


_S3_KEYS = ("bucket", "prefix", "endpoint", "region", "path_style", "access_key_id",
            "secret_access_key", "session_token", "profile", "rename_dir_limit")


def _storage(t: dict[str, Any]) -> StorageConfig:
    """[storage]: backend = "local" | "s3", and the s3.* keys (docs/server.md)."""
    t = dict(t)
    s3_t = dict(_typed("storage.s3", t.pop("s3", {}), dict))
    for k in [k for k in t if k.startswith("s3_")]:
        s3_t[k[3:]] = t.pop(k)  # NATFTP_STORAGE_S3_BUCKET arrives as storage.s3_bucket
    _check_keys("storage.", t, ("backend", "s3"))
    _check_keys("storage.s3.", s3_t, _S3_KEYS)
    backend = _typed("storage.backend", t.get("backend", "s3" if s3_t else "local"), str)
    if backend not in ("local", "s3"):
        raise ConfigError("storage.backend", backend, "unknown storage backend",
                          'use "local" (ROOT on disk) or "s3" (a bucket)')
    if backend == "local":
        if s3_t:
            raise ConfigError("storage.backend", backend, "s3.* keys are set but the "
                              "backend is local", 'set storage.backend = "s3"')
        return StorageConfig()
    try:
        import miniopy_async  # noqa: F401
    except ImportError:
        raise ConfigError("storage.backend", backend, "the S3 client library is not "
                          "installed", "pip install 'natftp[s3]' (miniopy-async)") from None
    if "bucket" not in s3_t:
        raise ConfigError("storage.s3.bucket", _MISSING, "the s3 backend needs a bucket",
                          "set s3.bucket in [storage], or --storage s3://BUCKET[/PREFIX]")

    def text(k: str) -> str | None:
        return _typed(f"storage.s3.{k}", s3_t[k], str) if k in s3_t else None
    bucket = text("bucket") or ""
    if not 3 <= len(bucket) <= 63 or "/" in bucket or any(c.isspace() for c in bucket):
        raise ConfigError("storage.s3.bucket", bucket, "not a bucket name (3 to 63 "
                          "characters, no '/' or spaces)",
                          "give the bucket alone, e.g. my-bucket (a prefix goes in "
                          "s3.prefix)")
    try:
        prefix = clean_prefix(text("prefix") or "")
    except ValueError as e:
        raise ConfigError("storage.s3.prefix", s3_t["prefix"], str(e),
                          'give segments separated by "/", e.g. "ftp/site1"') from None
    endpoint = text("endpoint")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError("storage.s3.endpoint", endpoint, "not an http:// or https:// URL",
                          "give the service's URL, e.g. http://127.0.0.1:9000")
    key_id, secret = text("access_key_id"), text("secret_access_key")
    if (key_id is None) != (secret is None):
        raise ConfigError("storage.s3.secret_access_key" if secret is None else
                          "storage.s3.access_key_id", "****", "only one of the key pair "
                          "is set", "set both s3.access_key_id and s3.secret_access_key, "
                          "or neither (AWS_* variables or a profile)")
    limit = _typed("storage.s3.rename_dir_limit", s3_t.get("rename_dir_limit", 1000), int)
    if limit < 0:
        raise ConfigError("storage.s3.rename_dir_limit", limit, "negative",
                          "0 refuses every directory rename; give 0 or more")
    return StorageConfig("s3", S3Settings(
        bucket=bucket, prefix=prefix, endpoint=endpoint, region=text("region"),
        path_style=_typed("storage.s3.path_style", s3_t.get("path_style", True), bool),
        access_key_id=key_id, secret_access_key=secret,
        session_token=text("session_token"), profile=text("profile"),
        rename_dir_limit=limit))


def _user(key: str, u: object, root: Path, *, local: bool = True) -> User:
    t = _typed(key, u, dict)
    _check_keys(f"{key}.", t, ("name", "password_hash", "home", "permissions", "tls"))
    if "name" not in t:
        raise ConfigError(f"{key}.name", _MISSING, "every user needs a name",
                          'add name = "alice"')
    name = _typed(f"{key}.name", t["name"], str)
    if not name or any(c in name for c in ":\r\n\0 ") or name in ("anonymous", "ftp"):
        raise ConfigError(f"{key}.name", name, "not a usable login name",
                          "use letters, digits, dots, dashes (anonymous/ftp are reserved "
                          "for [anonymous])")
    if "password_hash" not in t:
        raise ConfigError(f"{key}.password_hash", _MISSING, f"user {name!r} has no password",
                          "run `natftp passwd` and paste its output as password_hash")
    h = _typed(f"{key}.password_hash", t["password_hash"], str)
    if not h.startswith("$argon2"):
        raise ConfigError(f"{key}.password_hash", h, "not an argon2 hash",
                          "run `natftp passwd` and paste its output (plain passwords are "
                          "not accepted in the file)")
    why = _unreadable_hash(h)
    if why is not None:
        raise ConfigError(f"{key}.password_hash", h, f"argon2 cannot read this hash "
                          f"({why}): a placeholder or a cut-off copy, with which user "
                          f'"{name}" could never log in',
                          f"run `natftp passwd` and paste its whole output as {key}."
                          "password_hash")
    home = _home(f"{key}.home", t.get("home", "."), root, local=local)
    perms_t = _typed(f"{key}.permissions", t.get("permissions", {}), dict)
    _check_keys(f"{key}.permissions.", perms_t, PERMISSIONS)
    given = {p: _typed(f"{key}.permissions.{p}", perms_t[p], bool)
             for p in PERMISSIONS if p in perms_t}
    # changing permissions is a write: a user who may not write may not chmod either,
    # unless the table says so
    given.setdefault("chmod", given.get("write", True))
    perms = Permissions(**given)
    user_tls = _typed(f"{key}.tls", t.get("tls", {}), dict)
    _check_keys(f"{key}.tls.", user_tls, ("required",))
    required = (_tls_required(f"{key}.tls.required", user_tls["required"])
                if "required" in user_tls else None)
    return User(name=name, home=home, permissions=perms, password_hash=h,
                tls_required=required)


def _unreadable_hash(h: str) -> str | None:
    """Why argon2 cannot use ``h`` (None: it can). A placeholder such as
    ``$argon2id$v=19$m=65536,t=3,p=4$...`` or a hash cut short in a copy would otherwise
    start a server that refuses every password of that user, with nothing in the log.

    argon2 reads the parameters, then decodes salt and digest before it computes; it is
    asked to verify with the same salt, digest and parallelism but the smallest memory and
    time cost, so a malformed hash fails at once and a good one costs microseconds rather
    than a real verification per user at every start."""
    from argon2 import extract_parameters
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
    from argon2.low_level import verify_secret

    try:
        params = extract_parameters(h)
    except InvalidHashError:
        return "not $argon2id$v=19$m=...,t=...,p=...$SALT$DIGEST"
    if params.memory_cost < 8 * params.parallelism or params.time_cost < 1:
        return "its memory or time cost is below argon2's minimum"
    parts = h.split("$")  # parameters third from the end (argon2 1.0 hashes have no v=)
    parts[-3] = f"m={8 * params.parallelism},t=1,p={params.parallelism}"
    try:
        verify_secret("$".join(parts).encode("ascii", "replace"), b"", params.type)
    except VerifyMismatchError:
        return None
    except (VerificationError, InvalidHashError) as e:
        return str(e).lower() or "it does not decode"
    return None


def _tls_required(key: str, v: object) -> str:
    """false/"off", "control", "data"/true."""
    if isinstance(v, EnvText) and v.strip().lower() in _BOOL_WORDS:
        v = _BOOL_WORDS[v.strip().lower()]
    if v is True:
        return "data"
    if v is False:
        return "off"
    if isinstance(v, str) and v.lower() in TLS_REQUIRED:
        return v.lower()
    raise ConfigError(key, v, "not a TLS requirement",
                      'use false, "control" (AUTH TLS before USER) or "data" / true '
                      "(that, and PROT P before every transfer)")


def _tls(t: dict[str, Any], base_dir: Path) -> TLSConfig:
    _check_keys("tls.", t, ("enabled", "cert", "key", "state_dir", "listen_implicit",
                            "required", "require_session_reuse", "ccc", "min_version"))

    def path(k: str) -> Path | None:
        if k not in t:
            return None
        p = Path(_typed(f"tls.{k}", t[k], str)).expanduser()
        return p if p.is_absolute() else base_dir / p

    cert, key, state = path("cert"), path("key"), path("state_dir")
    if key is not None and cert is None:
        raise ConfigError("tls.key", str(key), "a key without a certificate",
                          "give tls.cert (--tls-cert) too")
    impl_v = t.get("listen_implicit", [])
    if isinstance(impl_v, str) and not isinstance(impl_v, EnvText):
        impl_v = [impl_v]
    impl = tuple(parse_listen(_typed("tls.listen_implicit", x, str), "tls.listen_implicit")
                 for x in _typed("tls.listen_implicit", impl_v, list))
    required = _tls_required("tls.required", t.get("required", False))
    reuse = _typed("tls.require_session_reuse", t.get("require_session_reuse", False), bool)
    ccc = _typed("tls.ccc", t.get("ccc", False), bool)
    minv = _typed("tls.min_version", t.get("min_version", "1.2"), str)
    if minv not in ("1.2", "1.3"):
        raise ConfigError("tls.min_version", minv, "not a TLS version this server offers",
                          'use "1.2" (default) or "1.3"')
    enabled = _typed("tls.enabled", t.get("enabled", False), bool)
    enabled = enabled or cert is not None or bool(impl)
    if not enabled:
        for k, on in (("tls.required", required != "off"),
                      ("tls.require_session_reuse", reuse), ("tls.ccc", ccc)):
            if on:
                raise ConfigError(k, t.get(k.split(".")[1]), "TLS is off",
                                  "turn TLS on: tls.enabled = true (--tls), or give "
                                  "tls.cert (--tls-cert) or tls.listen_implicit "
                                  "(--listen-implicit)")
    return TLSConfig(enabled=enabled, cert=cert, key=key, state_dir=state,
                     listen_implicit=impl, required=required, require_session_reuse=reuse,
                     ccc=ccc, min_version=minv)


def _nat(t: dict[str, Any], pasv_range: tuple[int, int] | None,
         listen: tuple[ListenAddress, ...] = ()) -> NatConfig:
    _check_keys("nat.", t, ("masquerade", "overrides", "advertised_ports",
                            "refresh_interval", *_ZEROCONF_KEYS))
    masq = t.get("masquerade")
    if masq is not None:
        masq = _typed("nat.masquerade", masq, str).strip()
    if masq is not None and masq.lower() in ("auto", "off"):
        masq = None  # discovery on or off: see _zeroconf
    if masq is not None:
        try:
            a = ipaddress.ip_address(masq)
            if a.is_unspecified:
                raise ConfigError("nat.masquerade", masq, "an unspecified address tells "
                                  "clients to connect to themselves",
                                  "give the public address or hostname of this server")
        except ValueError:
            if not masq or any(c in masq for c in " /:@") or len(masq) > 253:
                raise ConfigError("nat.masquerade", masq, "neither an IP address nor a "
                                  "hostname", 'e.g. "203.0.113.7" or "ftp.example.org"'
                                  ) from None
    overrides: list[Override] = []
    for i, o in enumerate(_typed("nat.overrides", t.get("overrides", []), list)):
        k = f"nat.overrides[{i}]"
        ot = _typed(k, o, dict)
        _check_keys(f"{k}.", ot, ("networks", "address"))
        nets = _typed(f"{k}.networks", ot.get("networks", _MISSING) if "networks" in ot
                      else [], list)
        if not nets:
            raise ConfigError(f"{k}.networks", nets, "no networks given",
                              'e.g. networks = ["10.8.0.0/16"]')
        if "address" not in ot:
            raise ConfigError(f"{k}.address", _MISSING, "no address given",
                              'e.g. address = "10.8.0.1"')
        addr = _typed(f"{k}.address", ot["address"], str)
        for n in nets:
            try:
                ipaddress.ip_network(_typed(f"{k}.networks", n, str), strict=False)
            except ValueError:
                raise ConfigError(f"{k}.networks", n, "not a network",
                                  'write CIDR, e.g. "10.8.0.0/16"') from None
        try:
            ov = Override.parse(nets, addr)
        except ValueError:
            raise ConfigError(f"{k}.address", addr, "not an IP address",
                              'e.g. "10.8.0.1"') from None
        if ov.address.is_unspecified:
            raise ConfigError(f"{k}.address", addr, "an unspecified address is never "
                              "advertised", "give the address these clients can reach")
        overrides.append(ov)
    adv = None
    if "advertised_ports" in t:
        adv = _range("nat.advertised_ports", t["advertised_ports"])
        if pasv_range is None:
            raise ConfigError("nat.advertised_ports", format_range(adv),
                              "maps the passive range, but no passive range is set",
                              "set passive.ports (--passive-ports) to a range of the same "
                              "size")
        if adv[1] - adv[0] != pasv_range[1] - pasv_range[0]:
            raise ConfigError("nat.advertised_ports", format_range(adv),
                              f"has {adv[1] - adv[0] + 1} ports but passive.ports "
                              f"{format_range(pasv_range)} has "
                              f"{pasv_range[1] - pasv_range[0] + 1}",
                              "give both ranges the same size (they map one to one)")
    ri = _positive("nat.refresh_interval",
                   _typed("nat.refresh_interval", t.get("refresh_interval", 300.0), float))
    return NatConfig(masquerade=masq, overrides=tuple(overrides), advertised_ports=adv,
                     refresh_interval=ri, zeroconf=_zeroconf(t, pasv_range, listen, adv))


# -- zero-config NAT (issue 8): nat.masquerade = "auto", nat.port_mapping = "auto" ------

_ZEROCONF_KEYS = ("stun_servers", "discovery_sources", "discovery_timeout",
                  "recheck_interval", "port_mapping", "mapping_protocols", "mapping_lease",
                  "mapping_stop_timeout")


def _is_loopback(la: ListenAddress) -> bool:
    return ipaddress.ip_address(la.host.split("%")[0]).is_loopback


def _names(key: str, value: object, known: tuple[str, ...]) -> tuple[str, ...]:
    items = _typed(key, value, list)
    out: list[str] = []
    for x in items:
        name = _typed(key, x, str).strip().lower()
        if name not in known:
            raise ConfigError(key, x, "unknown name", f"use some of {', '.join(known)}")
        out.append(name)
    if not out:
        raise ConfigError(key, items, "empty list", f"name at least one of {', '.join(known)}"
                          " (or turn the feature off)")
    return tuple(dict.fromkeys(out))


def _stun_server(key: str, value: object) -> str:
    text = _typed(key, value, str).strip()
    host, port = text, "3478"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(key, value, "not HOST[:PORT]", 'write "[2001:db8::1]:3478"')
        port = rest[1:] or port
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host or any(c in host for c in " /@") or not port.isdigit() or not (
            0 < int(port) < 65536):
        raise ConfigError(key, value, "not HOST[:PORT]",
                          'e.g. "stun.example.org" or "198.51.100.2:3478"')
    return text


def _zeroconf(t: dict[str, Any], pasv_range: tuple[int, int] | None,
              listen: tuple[ListenAddress, ...], adv: tuple[int, int] | None
              ) -> ZeroconfConfig:
    d = ZeroconfConfig()
    masq = t.get("masquerade")
    setting = masq.strip().lower() if isinstance(masq, str) else None
    if setting == "auto":
        discover, reason = True, "nat.masquerade = auto"
    elif setting == "off":
        discover, reason = False, "nat.masquerade = off"
    elif setting is not None:
        discover, reason = False, "nat.masquerade is set"
    elif listen and all(_is_loopback(la) for la in listen):
        discover, reason = False, "serving on loopback only"
    else:
        discover, reason = True, "the default when serving beyond loopback"
    sources = (_names("nat.discovery_sources", t["discovery_sources"], d.sources)
               if "discovery_sources" in t else d.sources)
    stun = tuple(_stun_server("nat.stun_servers", s)
                 for s in _typed("nat.stun_servers", t.get("stun_servers", []), list))
    timeout = _positive("nat.discovery_timeout", _typed(
        "nat.discovery_timeout", t.get("discovery_timeout", d.discovery_timeout), float))
    if timeout > 30:
        raise ConfigError("nat.discovery_timeout", timeout, "above 30 s",
                          "a router that has not answered in a few seconds will not; "
                          "use 1-10")
    recheck = _positive("nat.recheck_interval", _typed(
        "nat.recheck_interval", t.get("recheck_interval", d.recheck_interval), float))
    pm = _typed("nat.port_mapping", t.get("port_mapping", "off"), str).strip().lower()
    if pm not in ("auto", "off"):
        raise ConfigError("nat.port_mapping", pm, "unknown setting",
                          'use "auto" (map the control port and passive.ports on the '
                          'router) or "off"')
    mapping = pm == "auto"
    if mapping and pasv_range is None:
        raise ConfigError("nat.port_mapping", pm, "needs a passive port range to map",
                          'set passive.ports (--passive-ports), e.g. "30000-30099"')
    if mapping and adv is not None:
        raise ConfigError("nat.port_mapping", pm, "maps each port to itself, but "
                          "nat.advertised_ports says another NAT translates them",
                          "remove nat.advertised_ports or forward the ports by hand "
                          "(natftp firewall)")
    protocols = (_names("nat.mapping_protocols", t["mapping_protocols"],
                        d.mapping_protocols)
                 if "mapping_protocols" in t else d.mapping_protocols)
    lease = _typed("nat.mapping_lease", t.get("mapping_lease", d.mapping_lease), int)
    if not 0 <= lease <= 604800:
        raise ConfigError("nat.mapping_lease", lease, "not 0-604800 seconds",
                          "use e.g. 3600 (renewed at half-life); 0 asks for a permanent "
                          "mapping")
    stop_t = _positive("nat.mapping_stop_timeout", _typed(
        "nat.mapping_stop_timeout", t.get("mapping_stop_timeout", d.mapping_stop_timeout),
        float), zero_ok=True)
    return ZeroconfConfig(discover=discover, reason=reason, sources=sources,
                          stun_servers=stun, discovery_timeout=timeout,
                          recheck_interval=recheck, port_mapping=mapping,
                          mapping_protocols=protocols, mapping_lease=lease,
                          mapping_stop_timeout=stop_t)


def _active(t: dict[str, Any]) -> ActiveConfig:
    _check_keys("active.", t, ("source_port", "allow_foreign_address", "allow_low_ports"))
    sp = _typed("active.source_port", t.get("source_port", 0), int)
    if not 0 <= sp <= 65535:
        raise ConfigError("active.source_port", sp, "not a port",
                          "use 20 (classic, needs CAP_NET_BIND_SERVICE) or 0 (any)")
    return ActiveConfig(
        source_port=sp,
        allow_foreign_address=_typed("active.allow_foreign_address",
                                     t.get("allow_foreign_address", False), bool),
        allow_low_ports=_typed("active.allow_low_ports", t.get("allow_low_ports", False),
                               bool))



# -- PROXY protocol (issue 18) -------------------------------------------------------------

def _proxy_protocol(t: dict[str, Any]) -> ProxyProtocolConfig:
    _check_keys("proxy_protocol.", t, ("trusted", "header_timeout", "data_header_wait"))
    d = ProxyProtocolConfig()
    nets: list[IPNetwork] = []
    for n in _typed("proxy_protocol.trusted", t.get("trusted", []), list):
        text = _typed("proxy_protocol.trusted", n, str).strip()
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError("proxy_protocol.trusted", n, "not an address or network",
                              'write the balancer\'s address or CIDR, e.g. "10.0.0.5" or '
                              '"10.0.0.0/24"') from None
        if net.prefixlen == 0:
            raise ConfigError("proxy_protocol.trusted", n, "trusts every address: any "
                              "client could send a header claiming to be anyone",
                              "name only the balancers' addresses or network")
        if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
            mapped = net.network_address.ipv4_mapped
            net = ipaddress.ip_network(f"{mapped}/{max(0, net.prefixlen - 96)}",
                                       strict=False)
        nets.append(net)
    timeout = _positive("proxy_protocol.header_timeout", _typed(
        "proxy_protocol.header_timeout", t.get("header_timeout", d.header_timeout), float))
    wait = _positive("proxy_protocol.data_header_wait", _typed(
        "proxy_protocol.data_header_wait", t.get("data_header_wait", d.data_header_wait),
        float), zero_ok=True)
    return ProxyProtocolConfig(trusted=tuple(dict.fromkeys(nets)), header_timeout=timeout,
                               data_header_wait=wait)


# -- configuration from the environment (issue 18) ----------------------------------------

ENV_PREFIX = "NATFTP_"
#: NATFTP_* variables that are not settings of `natftp serve` (the test and lab tools')
ENV_NOT_SETTINGS = frozenset({"NATFTP_LAB_DEBUG", "NATFTP_PEERS_DIR", "NATFTP_SETUP_FORCE"})
_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True,
               "off": False, "1": True, "0": False}


class EnvText(str):
    """A value from an environment variable: text until the validator asks for a type.

    The key's own check (``_typed``) converts it, so a variable is held to the same
    rules, and gets the same errors, as the key in the file: ``true``/``false`` for
    booleans, numbers, lists as ``a,b,c`` (or a TOML array ``["a", "b"]``), tables and
    lists of tables as TOML inline values (``[{name = "alice", ...}]``).
    """

    def as_type(self, typ: type) -> Any:
        text = self.strip()
        try:
            if typ is bool:
                return _BOOL_WORDS.get(text.lower(), str(self))
            if typ is int:
                return int(text) if text.lstrip("-").isdigit() else str(self)
            if typ is float:
                return float(text)
            if typ is list:
                if text.startswith("["):
                    return [EnvText(x) if isinstance(x, str) else x
                            for x in _toml_value(text)]
                return [EnvText(x.strip()) for x in text.split(",") if x.strip()]
            if typ is dict and text.startswith("{"):
                return _toml_value(text)
        except ValueError:
            pass
        return str(self)


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as e:
        raise ValueError(str(e)) from None


def env_key(name: str) -> str | None:
    """The dotted key a ``NATFTP_<SECTION>_<KEY>`` variable sets; None when it is not one.

    ``NATFTP_LOG_LEVEL`` is the top-level key ``log_level`` (an exact top-level name wins),
    ``NATFTP_PROXY_PROTOCOL_TRUSTED`` is ``proxy_protocol.trusted`` (the longest section).
    """
    if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
        return None
    rest = name[len(ENV_PREFIX):].lower()
    if rest in _TOP:
        return rest
    for section in sorted(_TOP, key=len, reverse=True):
        if rest.startswith(section + "_") and len(rest) > len(section) + 1:
            return f"{section}.{rest[len(section) + 1:]}"
    return ""


def apply_env(data: Mapping[str, Any], environ: Mapping[str, str],
              ) -> tuple[dict[str, Any], dict[str, str]]:
    """``data`` (the file's dict) with every ``NATFTP_*`` variable of ``environ`` laid over
    it; returns the new dict and {dotted key: variable name}. ``data`` is not changed.

    A variable that names no section or top-level key raises :class:`ConfigError`; an
    unknown key inside a known section is left to the section's own check (which names
    the key and suggests the near one), with the variable named as its origin.
    """
    raw: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v)
                           for k, v in data.items()}
    found: dict[str, str] = {}
    for name in sorted(environ):
        key = env_key(name)
        if key is None:
            continue
        if not key:
            raise ConfigError(name, environ[name], "not a natftp serve setting",
                              "name a key as NATFTP_<KEY> or NATFTP_<SECTION>_<KEY> "
                              "(docs/server.md), e.g. NATFTP_NAT_MASQUERADE; keys and "
                              f"sections: {', '.join(_TOP)}")
        head = key.split(".")[0]
        if "." in key and head in raw and not isinstance(raw[head], dict):
            raise ConfigError(name, environ[name], f"the file sets {head} to a value, "
                              "not a table", f"write [{head}] as a table in the file")
        set_dotted(raw, key, EnvText(environ[name]))
        found[key] = name
    return raw, found


# -- operations (issue 20): [status], [log], and what a reload cannot change -------------

def _status(t: dict[str, Any], taken: set[tuple[str, int]]) -> StatusConfig:
    _check_keys("status.", t, ("listen", "refresh"))
    d = StatusConfig()
    la = None
    v = t.get("listen", "off")
    text = _typed("status.listen", v, str).strip()
    if text and text.lower() != "off":
        if ":" not in text and not text.isdigit():
            raise ConfigError("status.listen", text, "neither [HOST:]PORT nor off",
                              'e.g. "9121" (on 127.0.0.1) or "127.0.0.1:9121"')
        # a bare port is loopback: the page shows users and client addresses, unguarded
        la = parse_listen(f"127.0.0.1:{text}" if text.isdigit() else text, "status.listen")
        where = (str(ipaddress.ip_address(la.host.split("%")[0])), la.port)
        if where in taken and la.port != 0:
            raise ConfigError("status.listen", text, "also an FTP listen address",
                              'give the status page its own port, e.g. "127.0.0.1:9121"')
    refresh = _positive("status.refresh",
                        _typed("status.refresh", t.get("refresh", d.refresh), float))
    return StatusConfig(listen=la, refresh=refresh)


def _log(t: dict[str, Any], base_dir: Path) -> LogConfig:
    _check_keys("log.", t, ("file", "format", "xferlog"))

    def path(k: str) -> Path | None:
        v = _typed(f"log.{k}", t.get(k, ""), str).strip()
        if not v:
            return None
        p = Path(v).expanduser()
        p = p if p.is_absolute() else base_dir / p
        if not p.parent.is_dir():
            raise ConfigError(f"log.{k}", v, f"the directory {p.parent} does not exist",
                              f"create it (mkdir -p {p.parent}) or log elsewhere")
        return p

    fmt = _typed("log.format", t.get("format", "text"), str).strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError("log.format", fmt, "unknown format",
                          'use "text" (one line per event) or "json" (JSON lines)')
    return LogConfig(file=path("file"), format=fmt, xferlog=path("xferlog"))


def unwritable(key: str, path: object, err: OSError) -> ConfigError:
    """A log or xferlog file that cannot be opened for appending."""
    return ConfigError(key, str(path), f"cannot open it ({err.strerror or err})",
                       "give a file in a directory this user can write")


#: what SIGHUP cannot change in a running server: (key, how to read it from a config)
RESTART_KEYS: tuple[tuple[str, Any], ...] = (
    ("root", lambda c: c.root),
    ("run_as", lambda c: c.run_as),
    ("allow_root", lambda c: c.allow_root),
    ("listen", lambda c: c.listen),
    ("tls.listen_implicit", lambda c: c.tls.listen_implicit),
    ("passive.ports", lambda c: c.passive_ports),
    ("nat.advertised_ports", lambda c: c.nat.advertised_ports),
    ("status.listen", lambda c: c.status.listen),
    ("tls.enabled", lambda c: c.tls.enabled),
    ("nat.masquerade", lambda c: c.nat.zeroconf.discover),
    ("nat.port_mapping", lambda c: (c.nat.zeroconf.port_mapping,
                                    c.nat.zeroconf.mapping_protocols,
                                    c.nat.zeroconf.mapping_lease)),
    # the bucket's client and the users' homes in it are made at start
    ("storage", lambda c: c.storage),
)


def needs_restart(old: ServerConfig, new: ServerConfig) -> list[str]:
    """The keys whose change ``new`` asks for that only a restart can apply (bound
    sockets, the passive pool, background discovery and mapping, the privileges given up
    at start and ROOT, which they were checked against and interrupted uploads are swept
    under), each as
    ``key: old -> new``. ``nat.masquerade`` is listed only when it turns discovery
    (``"auto"``) on or off: a fixed address or hostname changes live."""
    out = []
    for key, get in RESTART_KEYS:
        a, b = get(old), get(new)
        if a != b:
            if key == "nat.masquerade":
                a = "auto" if a else (old.nat.masquerade or "off")
                b = "auto" if b else (new.nat.masquerade or "off")
            out.append(f"{key}: {_brief(a)} -> {_brief(b)}")
    return out


def _brief(v: object) -> str:
    if isinstance(v, tuple) and v and all(isinstance(x, ListenAddress) for x in v):
        return "[" + ", ".join(str(x) for x in v) + "]"
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return format_range((v[0], v[1]))
    if v is None:
        return "(not set)"
    return _show(v) if isinstance(v, str | bool) else str(v)
