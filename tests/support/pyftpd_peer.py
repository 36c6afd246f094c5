"""A real pyftpdlib server, run as a subprocess by the client's and the doctor's tests.

Usage: python pyftpd_peer.py --root DIR [--listen HOST:PORT] [--user U:P] [--perm P]
       [--anonymous] [--permit-foreign] [--banner TEXT] [--auth-failed-delay S]
       [--no-epsv] [--no-pasv] [--no-mlsd] [--masquerade ADDR] [--passive-ports L-H]
       [--rate BYTES_PER_S] [--tls CERTFILE] [--tls-required] [--implicit]
Prints "READY <port>" once it listens. Commands removed with --no-* get pyftpdlib's
"500 Command not understood", which is what a server without them says. Without
--banner the greeting is pyftpdlib's own (the doctor names the server from it).
"""

from __future__ import annotations

import argparse
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler
from pyftpdlib.servers import FTPServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--user", default="user:secret")
    ap.add_argument("--perm", default="elradfmwMT")
    ap.add_argument("--anonymous", action="store_true", help="also anonymous, read-only")
    ap.add_argument("--permit-foreign", action="store_true",
                    help="PORT/EPRT to an address other than the client's (FXP)")
    ap.add_argument("--banner")
    ap.add_argument("--auth-failed-delay", type=float)
    ap.add_argument("--masquerade")
    ap.add_argument("--passive-ports")
    ap.add_argument("--no-epsv", action="store_true")
    ap.add_argument("--no-pasv", action="store_true")
    ap.add_argument("--no-mlsd", action="store_true")
    ap.add_argument("--rate", type=int, default=0)
    ap.add_argument("--tls", metavar="CERTFILE", help="PEM with key and certificate")
    ap.add_argument("--tls-required", action="store_true")
    ap.add_argument("--implicit", action="store_true", help="TLS from the first byte")
    a = ap.parse_args()
    user, pw = a.user.split(":", 1)
    auth = DummyAuthorizer()
    auth.add_user(user, pw, a.root, perm=a.perm)
    if a.anonymous:
        auth.add_anonymous(a.root)

    base: type[FTPHandler] = FTPHandler
    if a.tls:
        from pyftpdlib.handlers import TLS_FTPHandler
        base = TLS_FTPHandler

    class Handler(base):  # type: ignore[valid-type,misc]
        def handle(self) -> None:
            if a.implicit:  # implicit FTPS: handshake before the banner
                self.secure_connection(self.ssl_context)
            super().handle()

    Handler.authorizer = auth
    Handler.permit_foreign_addresses = a.permit_foreign
    if a.banner:
        Handler.banner = a.banner
    if a.auth_failed_delay is not None:
        Handler.auth_failed_timeout = a.auth_failed_delay
    if a.tls:
        Handler.certfile = a.tls
        Handler.tls_control_required = a.tls_required
        Handler.tls_data_required = a.tls_required
    cmds = dict(Handler.proto_cmds)
    for flag, names in ((a.no_epsv, ["EPSV"]), (a.no_pasv, ["PASV"]),
                        (a.no_mlsd, ["MLSD", "MLST"])):
        if flag:
            for n in names:
                cmds.pop(n, None)
    Handler.proto_cmds = cmds
    if a.masquerade:
        Handler.masquerade_address = a.masquerade
    if a.passive_ports:
        lo, hi = (int(x) for x in a.passive_ports.split("-"))
        Handler.passive_ports = range(lo, hi + 1)
    if a.rate:
        class Slow(ThrottledDTPHandler):
            read_limit = a.rate
            write_limit = a.rate
        Handler.dtp_handler = Slow
    host, port = a.listen.rsplit(":", 1)
    server = FTPServer((host.strip("[]"), int(port)), Handler)
    print("READY", server.socket.getsockname()[1], flush=True)
    sys.stdout.flush()
    server.serve_forever(timeout=0.2)


if __name__ == "__main__":
    main()
