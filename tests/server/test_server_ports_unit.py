"""The passive port pool: round-robin, exhaustion, release, advertised mapping."""

from __future__ import annotations

import socket

import pytest

from natftp.nat.ports import PortPool, PortRangeError
from natftp.proto.hostport import format_port_range as format_range
from natftp.proto.hostport import parse_port_range as parse_range
from natftp.server.data import queued


def test_parse_and_format_range() -> None:
    assert parse_range("30000-30099") == (30000, 30099)
    assert parse_range(" 21 ") == (21, 21)
    assert format_range((5, 5)) == "5" and format_range((1, 2)) == "1-2"
    for bad in ("", "a-b", "10-5", "0-10", "1-70000", "1-", "-5"):
        with pytest.raises(PortRangeError):
            parse_range(bad)


def test_round_robin_exhaustion_and_release() -> None:
    pool = PortPool((100, 102))
    first = next(pool.candidates())
    pool.take(first)
    assert first == 100
    pool.take(next(pool.candidates()))
    pool.take(next(pool.candidates()))
    assert pool.in_use == 3 and list(pool.candidates()) == []
    pool.release(101)
    pool.release(101)  # twice is harmless
    assert list(pool.candidates()) == [101]
    with pytest.raises(PortRangeError):
        pool.take(99)


def test_no_range_means_any_port() -> None:
    pool = PortPool()
    assert list(pool.candidates()) == [0]
    assert pool.advertise(4242) == 4242 and pool.describe() == "any free port"


def test_advertised_mapping() -> None:
    pool = PortPool((30000, 30099), (31000, 31099))
    assert pool.advertise(30000) == 31000 and pool.advertise(30099) == 31099
    assert "advertised as 31000-31099" in pool.describe()
    with pytest.raises(PortRangeError):
        PortPool((30000, 30099), (31000, 31000))
    with pytest.raises(PortRangeError):
        PortPool(None, (31000, 31001))


def test_queued_counts_the_connections_waiting_to_be_accepted() -> None:
    """data.queued() (TCP_INFO of a listening socket) is what lets a kept passive socket
    skip the accept() that would only raise BlockingIOError: it must count exactly."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    conns = []
    try:
        assert queued(lsock) == 0
        for want in (1, 2):
            conns.append(socket.create_connection(lsock.getsockname()))
            assert queued(lsock) == want
        conn, _ = lsock.accept()
        conns.append(conn)
        assert queued(lsock) == 1
    finally:
        for c in conns:
            c.close()
        lsock.close()
