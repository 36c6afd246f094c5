"""A fake AWS IMDSv2 endpoint for the tests: ``fake_imds.py BIND_ADDR ANSWER_FILE``.

PUT /latest/api/token (with X-aws-ec2-metadata-token-ttl-seconds) hands out a token;
GET /latest/meta-data/public-ipv4 answers the file's content only with that token
(401 without, as IMDSv2 does). Anything else is 404. Run in a namespace the test made.
"""

from __future__ import annotations

import secrets
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOKEN = secrets.token_hex(16)


class Handler(BaseHTTPRequestHandler):
    answer_file: Path

    def _send(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:  # noqa: N802
        if self.path == "/latest/api/token" and self.headers.get(
                "X-aws-ec2-metadata-token-ttl-seconds"):
            self._send(200, TOKEN)
        else:
            self._send(400, "bad token request")

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/latest/meta-data/public-ipv4":
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self._send(401, "")
            else:
                self._send(200, self.answer_file.read_text().strip())
        else:
            self._send(404, "")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")


class Server(ThreadingHTTPServer):
    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the bind address's FQDN: a DNS query that
        # has nowhere to go in a namespace (and stalls start-up until it times out)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), 80


def main() -> None:
    Handler.answer_file = Path(sys.argv[2])
    Server((sys.argv[1], 80), Handler).serve_forever()


if __name__ == "__main__":
    main()
