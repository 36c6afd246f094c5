"""TLS for the gateway: the server context clients see, the client context for an FTPS
upstream (resuming the control session on data connections, as vsftpd and ProFTPD
require), and a throwaway self-signed certificate when none is configured."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path


class ReuseContext(ssl.SSLContext):
    """Client context whose new TLS objects resume ``reuse_session`` (asyncio has no
    ``session=`` argument; ``wrap_bio`` is what it calls)."""

    reuse_session: ssl.SSLSession | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side=server_side,
                                server_hostname=server_hostname,
                                session=session or self.reuse_session)


def self_signed(directory: Path, names: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path]:
    """Write a fresh self-signed certificate and key (EC P-256, 30 days) into directory."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "natftp gateway")])
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    certf, keyf = directory / "gateway-cert.pem", directory / "gateway-key.pem"
    certf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(keyf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return certf, keyf


def server_context(cert: str | Path | None, key: str | Path | None) -> tuple[ssl.SSLContext, str]:
    """The context clients see; without a certificate, a self-signed one (said in the
    returned description, which the gateway logs)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is None:
        d = Path(tempfile.mkdtemp(prefix="natftp-gateway-tls-"))
        c, k = self_signed(d)
        ctx.load_cert_chain(c, k)
        for f in (c, k):
            f.unlink()
        d.rmdir()
        return ctx, "self-signed certificate generated at start (clients must not verify)"
    ctx.load_cert_chain(cert, key)
    return ctx, f"certificate {cert}"


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
