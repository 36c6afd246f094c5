"""TLS for the client side of FTPS: contexts, certificate pins.

Servers such as vsftpd (``require_ssl_reuse=YES``, its default) and ProFTPD
(``TLSOptions`` without ``NoSessionReuseRequired``) refuse a data connection whose TLS
session is not the control connection's. Every context made here is a
:class:`natftp.tls.ReuseContext`, and the control channel hands its session to it before
each data connection (:meth:`natftp.ftpio.control.Control.data_tls`). A session can only
be resumed through the context that made it, so the control and data connections of one
session share one context.
"""

from __future__ import annotations

import hashlib
import ssl

from natftp.ftpio.errors import TLSError
from natftp.tls import ReuseContext


def normalise_fingerprint(fp: str) -> str:
    """``"AB:cd:..."`` or ``"sha256:abcd..."`` -> lower-case hex without separators."""
    fp = fp.strip().lower()
    if fp.startswith("sha256:"):
        fp = fp[7:]
    fp = fp.replace(":", "").replace(" ", "")
    if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
        raise ValueError(f"not a SHA-256 fingerprint (64 hex digits): {fp!r}")
    return fp


def make_context(verify: bool | str = True, fingerprint: str | None = None) -> ReuseContext:
    """A client context. ``verify`` True uses the system CAs, a string is a CA file, False
    checks nothing (the doctor inspects the certificate itself; the gateway's upstream is
    the operator's own server); a ``fingerprint`` replaces chain verification by a pin on
    the certificate itself (the usual way to trust a self-signed server certificate)."""
    ctx = ReuseContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if fingerprint is not None or verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        ctx.load_verify_locations(cafile=verify)
    else:
        ctx.load_default_certs()
    return ctx


def cert_fingerprint(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise TLSError("the server presented no certificate")
    return hashlib.sha256(der).hexdigest()


def check_pin(ssl_object: ssl.SSLObject | ssl.SSLSocket | None, fingerprint: str) -> None:
    got = cert_fingerprint(ssl_object)
    want = normalise_fingerprint(fingerprint)
    if got != want:
        raise TLSError(f"server certificate SHA-256 fingerprint {got} does not match the "
                       f"pinned {want}")
