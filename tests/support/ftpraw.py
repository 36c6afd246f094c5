"""A bare control connection for tests that need exact bytes and exact reply codes."""

from __future__ import annotations

import socket

from natftp.proto.addr import parse_227, parse_229
from natftp.proto.replies import Reply, ReplyParser


class Ctl:
    def __init__(self, host: str, port: int, timeout: float = 10) -> None:
        self.host = host
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.parser = ReplyParser()
        self.pending: list[Reply] = []
        self.banner = self.read()

    def read(self) -> Reply:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("server closed the control connection")
            self.pending.extend(self.parser.feed(data))
        return self.pending.pop(0)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: str) -> Reply:
        self.sock.sendall(line.encode("utf-8", "surrogateescape") + b"\r\n")
        return self.read()

    def login(self, user: str, password: str) -> Reply:
        r = self.cmd(f"USER {user}")
        assert r.code == 331, r
        r = self.cmd(f"PASS {password}")
        assert r.code == 230, r
        return r

    def pasv_data(self) -> socket.socket:
        r = self.cmd("PASV")
        assert r.code == 227, r
        host, port = parse_227(r.text)
        return socket.create_connection((str(host), port), timeout=10)

    def epsv_data(self) -> socket.socket:
        r = self.cmd("EPSV")
        assert r.code == 229, r
        return socket.create_connection((self.host, parse_229(r.text)), timeout=10)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Ctl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recv_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while True:
        b = sock.recv(65536)
        if not b:
            sock.close()
            return bytes(out)
        out += b
