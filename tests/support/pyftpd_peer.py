"""Run a pyftpdlib server for the doctor's tests (a real server, in a subprocess).

Usage: python pyftpd_peer.py --root DIR --listen HOST:PORT [--user U:P] [--perm P]
       [--masquerade ADDR] [--passive-ports L-H]
Prints "READY <port>" on stdout once it listens.
"""

from __future__ import annotations

import argparse
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--user", default="user:secret")
    ap.add_argument("--perm", default="elradfmwMT")
    ap.add_argument("--masquerade")
    ap.add_argument("--passive-ports")
    ap.add_argument("--certfile", help="PEM with key and certificate: explicit FTPS")
    ap.add_argument("--tls-required", action="store_true")
    a = ap.parse_args()
    user, pw = a.user.split(":", 1)
    auth = DummyAuthorizer()
    auth.add_user(user, pw, a.root, perm=a.perm)

    base: type[FTPHandler] = FTPHandler
    if a.certfile:
        from pyftpdlib.handlers import TLS_FTPHandler

        class TLSHandler(TLS_FTPHandler):
            certfile = a.certfile
            tls_control_required = a.tls_required
            tls_data_required = a.tls_required

        base = TLSHandler

    class Handler(base):  # type: ignore[valid-type,misc]
        pass

    Handler.authorizer = auth
    Handler.permit_foreign_addresses = False
    if a.masquerade:
        Handler.masquerade_address = a.masquerade
    if a.passive_ports:
        lo, hi = (int(x) for x in a.passive_ports.split("-"))
        Handler.passive_ports = range(lo, hi + 1)
    host, port = a.listen.rsplit(":", 1)
    server = FTPServer((host.strip("[]"), int(port)), Handler)
    print("READY", server.socket.getsockname()[1], flush=True)
    sys.stdout.flush()
    server.serve_forever(timeout=0.5)


if __name__ == "__main__":
    main()
