"""TLS for FTPS: contexts with verification on, fingerprint pins, session reuse.

Servers such as vsftpd (``require_ssl_reuse=YES``, its default) and ProFTPD
(``TLSOptions`` without ``NoSessionReuseRequired``) refuse a data connection whose TLS
session is not the control connection's. asyncio has no ``session=`` argument, so the
context used for data connections hands the control connection's session to every new
TLS object it makes (:class:`natftp.tls.ReuseContext`).
"""

from __future__ import annotations

import hashlib
import ssl
from typing import Any

from natftp.client.errors import TLSError
from natftp.tls import ReuseContext

#: the client's name for the shared session-resuming context
SessionReuseContext = ReuseContext


def normalise_fingerprint(fp: str) -> str:
    """``"AB:cd:..."`` or ``"sha256:abcd..."`` -> lower-case hex without separators."""
    fp = fp.strip().lower()
    if fp.startswith("sha256:"):
        fp = fp[7:]
    fp = fp.replace(":", "").replace(" ", "")
    if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits): {fp!r}")
    return fp


def make_context(verify: bool | str = True, fingerprint: str | None = None) -> SessionReuseContext:
    """A client context. ``verify`` True uses the system CAs, a string is a CA file;
    a ``fingerprint`` replaces chain verification by a pin on the certificate itself
    (the usual way to trust a self-signed server certificate)."""
    ctx = SessionReuseContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if fingerprint is not None or verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        ctx.load_verify_locations(cafile=verify)
    else:
        ctx.load_default_certs()
    return ctx


def cert_fingerprint(ssl_object: Any) -> str:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise TLSError("the server presented no certificate")
    return hashlib.sha256(der).hexdigest()


def check_pin(ssl_object: Any, fingerprint: str) -> None:
    got = cert_fingerprint(ssl_object)
    want = normalise_fingerprint(fingerprint)
    if got != want:
        raise TLSError(f"server certificate SHA-256 fingerprint {got} does not match the "
                       f"pinned {want}")
