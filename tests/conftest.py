"""Suite-wide fixtures. Real FTP peers live in tests/support/peers.py (see its docstring)."""

from __future__ import annotations

from support.peers import (  # noqa: F401  (fixtures are found by name)
    ftp_peer,
    make_peer,
    proftpd_peer,
    pureftpd_peer,
    pyftpdlib_peer,
    vsftpd_peer,
)
