"""FTPS for the server: the certificate, per-session TLS contexts, and TLS on the control
connection.

**Certificates.** :class:`CertStore` reads ``tls.cert``/``tls.key`` (or a self-signed pair
it generated once into ``tls.state_dir``), checks them (PEM, not expired, key matches)
and keeps a snapshot in memory (memfd), so a file being rewritten while the server runs
never breaks a handshake. :meth:`CertStore.reload` (SIGHUP) swaps the snapshot only when
the new files pass the same checks.

**One context per TLS session.** Every control connection gets its own ``SSLContext``.
Its data connections are accepted with that same context, so a data connection that
*resumes* a session proves it holds a session or ticket issued on this very control
connection: session ids cannot be compared for that (with tickets OpenSSL leaves them
empty under TLS 1.2 and issues new ones under 1.3), a shared context would accept any
session of the server. The certificate is not loaded into each: the snapshot is parsed
once into a template context, and a session's context borrows it at each handshake
(:func:`natftp.tls.borrowing_context`; ~0.1 ms a session instead of ~0.7 ms, which was
over half of natftp's core in an FTPS login storm). A session keeps the template it
started with, so a reload leaves running sessions on their certificate.

**Control connection.** :class:`ControlTLS` runs TLS over memory BIOs inside the session
protocol instead of asyncio's SSL transport, because CCC (RFC 4217 section 12) needs to
end TLS and keep the TCP connection, which asyncio's transport cannot do.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natftp.server.config import ConfigError, TLSConfig
from natftp.tls import borrowing_context, fingerprint, self_signed, server_context

log = logging.getLogger("natftp.server")

SELF_SIGNED_DAYS = 3650
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` (systemd), else ``$XDG_STATE_HOME/natftp``, else
    ``~/.local/state/natftp``."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "natftp"


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What is being served, for the start line and the logs."""

    fingerprint: str
    subject: str
    not_after: datetime.datetime
    source: str  # "certificate FILE" or "self-signed certificate FILE (generated ...)"


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd


class CertStore:
    """The server certificate, checked at start and on reload."""

    def __init__(self, cfg: TLSConfig) -> None:
        self.cfg = cfg
        self.minimum = _VERSIONS[cfg.min_version]
        self._fds: tuple[int, int] | None = None
        #: the snapshot parsed once: every session context borrows its certificate
        self._template: ssl.SSLContext | None = None
        self.info: CertInfo | None = None

    # -- loading -------------------------------------------------------------------

    def _files(self) -> tuple[Path, Path | None, str, str]:
        """(cert, key, key name for errors, how it came to be)."""
        cfg = self.cfg
        if cfg.cert is not None:
            return cfg.cert, cfg.key, "tls.key" if cfg.key else "tls.cert", "certificate"
        d = cfg.state_dir or default_state_dir()
        cert, key = d / "server-cert.pem", d / "server-key.pem"
        note = "self-signed certificate"
        if cert.exists() and key.exists():
            if self._expired(cert):
                log.warning("the generated self-signed certificate %s has expired; "
                            "generating a new one (clients that pinned the old "
                            "fingerprint must pin the new one)", cert)
            else:
                return cert, key, "tls.state_dir", note
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            names = ("localhost", socket.gethostname(), "127.0.0.1", "::1")
            self_signed(d, names, stem="server", common_name="natftp server (self-signed)",
                        days=SELF_SIGNED_DAYS)
        except OSError as e:
            raise ConfigError("tls.state_dir", str(d), f"cannot write the generated "
                              f"certificate there ({e.strerror or e})",
                              "give a writable directory with --state-dir, or a "
                              "certificate with --tls-cert/--tls-key") from None
        return cert, key, "tls.state_dir", note + " (generated now)"

    @staticmethod
    def _expired(cert: Path) -> bool:
        from cryptography import x509
        try:
            c = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        except (ValueError, OSError, IndexError):
            return True
        return _not_after(c) <= datetime.datetime.now(datetime.UTC)

    def load(self) -> CertInfo:
        """Check the files and make them current; ConfigError (key, value, fix) if not."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert_p, key_p, key_name, note = self._files()
        cert_key = "tls.cert" if self.cfg.cert is not None else "tls.state_dir"
        try:
            cert_pem = cert_p.read_bytes()
        except OSError as e:
            raise ConfigError(cert_key, str(cert_p), f"cannot read it ({e.strerror})",
                              "give the path of a readable PEM certificate") from None
        try:
            key_pem = key_p.read_bytes() if key_p is not None else cert_pem
        except OSError as e:
            raise ConfigError(key_name, str(key_p), f"cannot read it ({e.strerror})",
                              "give the path of a readable PEM private key") from None
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError:
            chain = []
        if not chain:
            raise ConfigError(cert_key, str(cert_p), "no PEM certificate in it",
                              "give a PEM file starting with -----BEGIN CERTIFICATE----- "
                              "(the server certificate first, then its chain)")
        leaf = chain[0]
        now = datetime.datetime.now(datetime.UTC)
        na, nb = _not_after(leaf), _not_before(leaf)
        if na <= now:
            raise ConfigError(cert_key, str(cert_p), f"the certificate expired on "
                              f"{na:%Y-%m-%d %H:%M} UTC",
                              "renew it (e.g. certbot renew) and restart or send SIGHUP, "
                              "or drop --tls-cert to use a generated self-signed one")
        if nb > now:
            raise ConfigError(cert_key, str(cert_p), f"the certificate is not valid before "
                              f"{nb:%Y-%m-%d %H:%M} UTC", "check the system clock, or use "
                              "a certificate that is valid now")
        if b"ENCRYPTED" in key_pem and b"PRIVATE KEY" in key_pem:
            raise ConfigError(key_name, str(key_p), "the key is protected by a passphrase, "
                              "which a server cannot type", "store it decrypted with "
                              "mode 0600: openssl pkey -in KEY -out KEY.plain")
        try:
            serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as e:
            raise ConfigError(key_name, str(key_p), f"no usable PEM private key in it ({e})",
                              "give the key file that belongs to the certificate "
                              "(--tls-key)") from None
        fds = (_memfd("natftp-cert", cert_pem), _memfd("natftp-key", key_pem))
        try:
            template = server_context(*(f"/proc/self/fd/{fd}" for fd in fds),
                                      minimum=self.minimum)
        except ssl.SSLError as e:
            for fd in fds:
                os.close(fd)
            why = ("the key does not belong to the certificate" if "mismatch" in str(e)
                   else f"OpenSSL refused it ({e.reason or e})")
            raise ConfigError(key_name, str(key_p or cert_p), why,
                              "give the private key the certificate was issued for "
                              "(compare: openssl x509 -noout -pubkey -in CERT; "
                              "openssl pkey -pubout -in KEY)") from None
        old, self._fds = self._fds, fds
        self._template = template
        if old is not None:
            for fd in old:
                os.close(fd)
        self.info = CertInfo(fingerprint(leaf.public_bytes(serialization.Encoding.DER)),
                             leaf.subject.rfc4514_string(), na,
                             f"{note} {cert_p}" + (f" (chain of {len(chain)})"
                                                   if len(chain) > 1 else ""))
        return self.info

    def reload(self) -> CertInfo:
        """SIGHUP: the same checks; on error the current certificate stays (raises)."""
        return self.load()

    def session_context(self) -> ssl.SSLContext:
        """A new context for one control connection and its data connections: its own
        tickets, the current certificate."""
        assert self._template is not None, "CertStore.load() first"
        return borrowing_context(self._template, minimum=self.minimum)

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None


def _not_after(c: Any) -> datetime.datetime:
    return c.not_valid_after_utc  # type: ignore[no-any-return]


def _not_before(c: Any) -> datetime.datetime:
    return c.not_valid_before_utc  # type: ignore[no-any-return]


# -- the control connection -------------------------------------------------------------

HANDSHAKE, OPEN, CLEARING = "handshake", "open", "clearing"
#: TLS record content types (change_cipher_spec, alert, handshake, application data)
_RECORD_TYPES = (0x14, 0x15, 0x16, 0x17)


class ControlTLS:
    """Server-side TLS over memory BIOs: bytes in from the socket, plaintext out, and the
    other way round; ``clear()`` for CCC."""

    __slots__ = ("obj", "inc", "out", "state", "_pending", "received")

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.state = HANDSHAKE
        self._pending = b""
        #: any byte received yet (the first one says whether the peer speaks TLS at all)
        self.received = False

    def outgoing(self) -> bytes:
        return self.out.read()

    def receive(self, data: bytes) -> tuple[bytes, bool]:
        """Feed socket bytes; returns (plaintext, handshake finished just now). Raises
        ``ssl.SSLError`` (handshake or record failure) and ``EOFError`` (close_notify)."""
        self.received = True
        self.inc.write(data)
        done = False
        if self.state == HANDSHAKE:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                return b"", False
            self.state = OPEN
            done = True
        out = bytearray()
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                raise EOFError("the client closed TLS (close_notify)") from None
            if not chunk:
                break
            out += chunk
        return bytes(out), done

    def encrypt(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.out.read()

    def clear(self) -> bytes:
        """CCC: send close_notify; the TCP connection goes on in the clear."""
        self.state = CLEARING
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        return self.out.read()

    def receive_clearing(self, data: bytes) -> bytes | None:
        """After CCC: TLS records (the client's close_notify) are consumed, the first
        byte that cannot start a TLS record starts the plaintext. Returns the plaintext
        that follows, or None while still inside TLS records. Clients differ: curl's
        default (--ftp-ssl-ccc-mode passive) never answers the server's close_notify,
        ftplib's ``ccc()`` does."""
        buf = self._pending + data
        while buf:
            if buf[0] not in _RECORD_TYPES:
                self._pending = b""
                return buf
            if len(buf) < 5:
                break
            end = 5 + int.from_bytes(buf[3:5], "big")
            if len(buf) < end:
                break
            self.inc.write(buf[:end])
            buf = buf[end:]
            try:
                self.obj.unwrap()
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLError:
                pass
            self._pending = b""
            return buf
        self._pending = buf
        return None

    def describe(self) -> str:
        c = self.obj.cipher()
        return f"{self.obj.version()} {c[0] if c else '?'}"
