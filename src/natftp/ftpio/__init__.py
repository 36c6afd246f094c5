"""The client side of FTP, once: control channel (replies with deadlines, a transcript
hook, greeting, AUTH TLS, login, session reuse for data) and data channels (dial a
passive target, listen for an active one, TLS on either).

Used by the client (:mod:`natftp.client`), the doctor and the gateway's upstream side.
It imports only :mod:`natftp.proto`, :mod:`natftp.nat` and the shared
:mod:`natftp.tls` (see docs/HACKING.md for the layers).
"""

from __future__ import annotations

from natftp.ftpio.control import DEFAULT, Control, Trace
from natftp.ftpio.data import (
    ActiveListener,
    Probe,
    classify_connect_error,
    close_writer,
    dial,
    probe,
    read_all,
    start_tls,
    streams,
)
from natftp.ftpio.tls import check_pin, make_context

__all__ = [
    "DEFAULT", "ActiveListener", "Control", "Probe", "Trace", "check_pin",
    "classify_connect_error", "close_writer", "dial", "make_context", "probe", "read_all",
    "start_tls", "streams",
]
