"""TLS for the gateway: the server context clients see, the client context for an FTPS
upstream (resuming the control session on data connections, as vsftpd and ProFTPD
require), and a throwaway self-signed certificate when none is configured."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from natftp.tls import ReuseContext, self_signed
from natftp.tls import server_context as _server_context

__all__ = ["ReuseContext", "self_signed", "server_context", "upstream_context"]


def server_context(cert: str | Path | None, key: str | Path | None) -> tuple[ssl.SSLContext, str]:
    """The context clients see; without a certificate, a self-signed one (said in the
    returned description, which the gateway logs)."""
    if cert is None:
        d = Path(tempfile.mkdtemp(prefix="natftp-gateway-tls-"))
        c, k = self_signed(d)
        ctx = _server_context(c, k)
        for f in (c, k):
            f.unlink()
        d.rmdir()
        return ctx, "self-signed certificate generated at start (clients must not verify)"
    return _server_context(cert, key), f"certificate {cert}"


def upstream_context(verify: bool = False) -> ReuseContext:
    """Client context toward an FTPS upstream. The upstream is the operator's own server
    reached on a private network, usually with a self-signed certificate: no
    verification unless asked."""
    ctx = ReuseContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
