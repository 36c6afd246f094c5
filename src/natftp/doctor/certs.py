"""What a server's TLS certificate says, read from its DER bytes (no network, no clock of
its own: the caller passes ``now``), so the verdict on it can be tested with made-up
certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class CertFacts:
    names: tuple[str, ...]  # subjectAltName DNS and IP entries, then the CN
    not_before: dt.datetime
    not_after: dt.datetime
    self_signed: bool


def read_cert(der: bytes) -> CertFacts:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.DNSName)
        names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if str(a.value) not in names:
            names.append(str(a.value))
    return CertFacts(tuple(names), cert.not_valid_before_utc, cert.not_valid_after_utc,
                     cert.issuer == cert.subject)


def name_matches(host: str, names: tuple[str, ...] | list[str]) -> bool:
    """Whether a certificate with ``names`` is for ``host`` (an IP, a name, a wildcard)."""
    h = host.lower().rstrip(".")
    try:
        ha = ipaddress.ip_address(h)
        return any(_same_ip(ha, n) for n in names)
    except ValueError:
        pass
    for n in names:
        n = n.lower().rstrip(".")
        if n == h:
            return True
        if n.startswith("*.") and "." in h and h.split(".", 1)[1] == n[2:]:
            return True
    return False


def _same_ip(a: ipaddress.IPv4Address | ipaddress.IPv6Address, n: str) -> bool:
    try:
        return ipaddress.ip_address(n) == a
    except ValueError:
        return False
