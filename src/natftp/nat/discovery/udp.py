"""One UDP request/answer exchange with retransmission, bounded in count and time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, peer: tuple[str, int], accept: Callable[[bytes], bool]) -> None:
        self.peer = peer
        self.accept = accept
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(str(addr[1]))
        if host.startswith("::ffff:"):
            host = host[7:]
        if (host, port) != self.peer or self.answer.done():
            return  # only the peer we asked may answer (no spoofed/stray datagrams)
        if self.accept(data):
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc or ConnectionError("socket closed"))


async def udp_exchange(host: str, port: int, payload: bytes, timeout: float,
                       accept: Callable[[bytes], bool] = lambda _d: True,
                       first_rto: float = 0.25, max_sends: int = 9) -> bytes:
    """Send ``payload`` to ``host:port`` until an accepted answer arrives.

    Retransmits after ``first_rto`` seconds, doubling each time, at most ``max_sends``
    times and never past ``timeout``; raises TimeoutError then. An ICMP port unreachable
    surfaces as ConnectionRefusedError at once.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _Proto((host, port), accept), family=family,
        remote_addr=(host, port))
    try:
        deadline = loop.time() + timeout
        rto = first_rto
        for _ in range(max_sends):
            transport.sendto(payload)
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                return await asyncio.wait_for(asyncio.shield(proto.answer), min(rto, left))
            except TimeoutError:
                rto *= 2
        raise TimeoutError(f"no answer from {host}:{port} within {timeout:g} s")
    finally:
        transport.close()
