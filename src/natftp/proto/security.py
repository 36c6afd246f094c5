"""RFC 2228 / RFC 4217 security commands: which AUTH mechanisms exist and what they imply.

The server and the gateway both answer AUTH, PBSZ and PROT; what a mechanism means is
decided here so that they cannot disagree (they did: the gateway once left data in the
clear after ``AUTH SSL``, which the server, like vsftpd and ProFTPD, protects).
"""

from __future__ import annotations

from dataclasses import dataclass

#: mechanism -> whether it protects data connections from the start (PROT P)
_MECHANISMS = {
    "TLS": False,    # RFC 4217: data stays PROT C until the client sends PROT P
    "TLS-C": False,  # the draft's name for the same
    "SSL": True,     # pre-RFC 4217 clients expect protected data without PROT P
    "TLS-P": True,   # the draft's "TLS with protected data"
}

#: the FEAT lines a TLS-capable server (or gateway) advertises (RFC 4217 section 6)
TLS_FEATURES = ("AUTH TLS", "PBSZ", "PROT")


@dataclass(frozen=True, slots=True)
class AuthMechanism:
    """An AUTH argument we accept: its canonical name and the PROT level it implies."""

    name: str
    prot_p: bool


def auth_mechanism(arg: str) -> AuthMechanism | None:
    """``AUTH tls`` -> AuthMechanism("TLS", prot_p=False); None for an unknown mechanism
    (answer 504)."""
    name = arg.strip().upper()
    prot = _MECHANISMS.get(name)
    return None if prot is None else AuthMechanism(name, prot)
