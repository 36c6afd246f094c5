"""Tiny TCP helpers run inside lab namespaces (python -c, no extra packages)."""

from __future__ import annotations

import sys

PYTHON = sys.executable

# listen on HOST:PORT, answer each connection with "hello <peer address>\n", N times
ECHO_PEER = r"""
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(8); s.settimeout(20)
for _ in range(n):
    c, a = s.accept()
    c.sendall(f"hello {a[0]}\n".encode()); c.close()
"""

# connect to HOST:PORT with a timeout; print what was received or the error's errno name
DIAL = r"""
import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    c = socket.create_connection((host, port), timeout=3)
    print("OK", c.recv(100).decode().strip())
except TimeoutError:
    print("ERR timeout")
except OSError as e:
    print("ERR", errno.errorcode.get(e.errno, str(e.errno)))
"""

# the raw 227 reply to PASV (ftplib, no data connection)
PASV_REPLY = r"""
import ftplib, sys
f = ftplib.FTP(); f.connect(sys.argv[1], int(sys.argv[2]), timeout=4)
f.login(sys.argv[3], sys.argv[4])
print(f.sendcmd("PASV")); f.close()
"""
