"""The client side of FTP, once: control channel (replies with deadlines, a transcript
hook, greeting, AUTH TLS, login, session reuse for data) and data channels (dial a
passive target, listen for an active one, TLS on either).

Used by the client (:mod:`natftp.client`), the doctor and the gateway's upstream side.
It imports only :mod:`natftp.proto`, :mod:`natftp.nat` and the shared
:mod:`natftp.tls` (see docs/HACKING.md for the layers).
"""
