"""A real pyftpdlib server for the client's tests, run as a subprocess.

Usage: python ftpd_peer.py --root DIR [--listen HOST:PORT] [--user U:P] [--no-epsv]
       [--no-pasv] [--no-mlsd] [--masquerade ADDR] [--passive-ports L-H]
       [--rate BYTES_PER_S] [--tls CERTFILE] [--tls-required] [--implicit]
Prints "READY <port>" once it listens. Commands removed with --no-* get pyftpdlib's
"500 Command not understood", which is what a server without them says.
"""

from __future__ import annotations

import argparse
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler, ThrottledDTPHandler
from pyftpdlib.servers import FTPServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--user", default="alice:wonder land")
    ap.add_argument("--perm", default="elradfmwMT")
    ap.add_argument("--masquerade")
    ap.add_argument("--passive-ports")
    ap.add_argument("--no-epsv", action="store_true")
    ap.add_argument("--no-pasv", action="store_true")
    ap.add_argument("--no-mlsd", action="store_true")
    ap.add_argument("--rate", type=int, default=0)
    ap.add_argument("--tls")
    ap.add_argument("--tls-required", action="store_true")
    ap.add_argument("--implicit", action="store_true", help="TLS from the first byte")
    a = ap.parse_args()
    user, pw = a.user.split(":", 1)
    auth = DummyAuthorizer()
    auth.add_user(user, pw, a.root, perm=a.perm)
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
    Handler.permit_foreign_addresses = True
    Handler.banner = "natftp client test server ready."
    Handler.auth_failed_timeout = 0.1
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
    elif not a.tls:
        Handler.dtp_handler = DTPHandler
    host, port = a.listen.rsplit(":", 1)
    server = FTPServer((host.strip("[]"), int(port)), Handler)
    print("READY", server.socket.getsockname()[1], flush=True)
    sys.stdout.flush()
    server.serve_forever(timeout=0.2)


if __name__ == "__main__":
    main()
