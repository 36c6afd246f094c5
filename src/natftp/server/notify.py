"""systemd's notification protocol (sd_notify(3)), for ``Type=notify`` units.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) and
reads datagrams of ``KEY=VALUE`` lines from it: ``READY=1`` once the service serves
(natftp sends it after every listener is bound), ``RELOADING=1`` then ``READY=1``
around a SIGHUP reload, ``STOPPING=1`` when it begins to stop, and ``STATUS=...``, the
line ``systemctl status`` shows. Without ``NOTIFY_SOCKET`` nothing is sent. A socket
that cannot be reached is reported once in the log and then left alone: the server
serves either way.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("natftp.server")


class Notifier:
    """Sends to ``$NOTIFY_SOCKET`` (or ``address``) if there is one."""

    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str | int) -> bool:
        """One datagram: ``send(READY=1, STATUS="...")``; True if it was sent."""
        if not self.address:
            return False
        text = "".join(f"{k}={str(v).replace(chr(10), ' ')}\n" for k, v in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)
                s.sendall(text.encode("utf-8", "replace"))
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at NOTIFY_SOCKET=%s (%s); serving "
                            "anyway", self.address.replace("\0", "@"), e.strerror or e)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status, MAINPID=os.getpid())

    def reloading(self) -> bool:
        return self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(
            time.CLOCK_MONOTONIC) // 1000)

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)
