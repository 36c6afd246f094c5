"""TLS pieces shared by the client, the gateway and the server.

- :class:`ReuseContext`: a client context whose new TLS objects resume the control
  connection's session. asyncio has no ``session=`` argument; ``wrap_bio`` is what it
  calls (asyncio and uvloop alike), so the session is injected there.
- :func:`self_signed`: a self-signed certificate and key written as PEM files.
- :func:`server_context`: a server context with modern defaults (TLS 1.2+, AEAD ciphers
  with forward secrecy, no renegotiation, no compression).
- :func:`borrowing_context`: a server context of the same defaults that keeps its own
  session tickets and cache but serves the certificate of another (loaded once).
- :func:`fingerprint`: the SHA-256 of a DER certificate, as users pin it.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

#: TLS 1.2 suites offered by servers (TLS 1.3 suites are all AEAD and stay as OpenSSL has
#: them): ECDHE/DHE key exchange, AES-GCM or ChaCha20-Poly1305; no CBC, RC4, 3DES, SHA1.
SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!PSK"


class ReuseContext(ssl.SSLContext):
    """Client context whose new TLS objects resume ``reuse_session``."""

    reuse_session: ssl.SSLSession | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side=server_side,
                                server_hostname=server_hostname,
                                session=session or self.reuse_session)


def _server_defaults(minimum: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minimum
    ctx.set_ciphers(SERVER_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str] | None = None,
                   *, minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
    """A server context with ``cert`` (PEM, leaf first, then the chain) and ``key`` (None:
    the key is in the certificate file). Raises ``ssl.SSLError``/``OSError``."""
    ctx = _server_defaults(minimum)
    ctx.load_cert_chain(cert, key)
    return ctx


def borrowing_context(template: ssl.SSLContext, *,
                      minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> ssl.SSLContext:
    """A server context with no certificate of its own: every handshake made from it
    switches to ``template`` (a :func:`server_context`) in the SNI callback, which OpenSSL
    calls with or without a server name, and so serves ``template``'s certificate. The
    session tickets and the session cache stay this context's own: OpenSSL encrypts and
    decrypts tickets with the context a connection was created from, not the one it was
    switched to. A session issued on a connection made from one such context resumes
    only on connections made from the same one.

    Why: parsing a PEM certificate and key costs ~0.6 ms of OpenSSL 3 (over half of a
    TLS login's server time when every control connection has a context of its own);
    this one costs ~0.1 ms."""
    ctx = _server_defaults(minimum)

    def take_certificate(obj: ssl.SSLObject | ssl.SSLSocket, name: str | None,
                         _ctx: ssl.SSLContext) -> None:
        obj.context = template

    ctx.sni_callback = take_certificate
    return ctx


def fingerprint(der: bytes) -> str:
    """``AB:CD:...``: SHA-256 of a DER certificate in the usual colon form."""
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, 64, 2))


def self_signed(directory: Path, names: tuple[str, ...] = ("localhost",), *,
                stem: str = "gateway", common_name: str = "natftp gateway",
                days: int = 30) -> tuple[Path, Path]:
    """Write a fresh self-signed certificate and key (EC P-256) into ``directory`` as
    ``STEM-cert.pem`` and ``STEM-key.pem`` (the key mode 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
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
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    certf, keyf = directory / f"{stem}-cert.pem", directory / f"{stem}-key.pem"
    fd = os.open(keyf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    certf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return certf, keyf
