"""TLS for the gateway: the server context clients see, with a throwaway self-signed
certificate when none is configured. (Its upstream side is an FTPS client:
:mod:`natftp.ftpio.tls`.)"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from natftp.tls import self_signed
from natftp.tls import server_context as _server_context


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
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{flag} {path}: no such file (give the path of a readable PEM "
                             "file)")
    try:
        return _server_context(cert, key), f"certificate {cert}"
    except ssl.SSLError as e:
        raise ValueError(f"--tls-cert {cert}" + (f" --tls-key {key}" if key else "")
                         + f": not a PEM certificate with its private key ({e.reason or e}); "
                         "give the certificate (then its chain) and the key it was issued "
                         "for, in one file or with --tls-key") from None
    except OSError as e:  # (after ssl.SSLError, which is one)
        raise ValueError(f"--tls-cert {cert}: cannot read it ({e.strerror or e})") from None
