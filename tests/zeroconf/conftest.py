"""Fixtures for the zero-config NAT tests: namespaces with miniupnpd, stund, a fake IMDS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from zlab import Lab, zlab


@pytest.fixture(autouse=True)
def _servers_end_with_their_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that fails before stopping its natftp server must not leave it running in a
    lab the next test of the module shares (it would find port 2121 taken)."""
    yield
    for value in request.node.funcargs.values():
        if isinstance(value, Lab):
            value.stop_servers()


@pytest.fixture(scope="module")
def igd() -> Iterator[Lab]:
    """A router running miniupnpd (UPnP IGD + NAT-PMP + PCP), stund in the internet."""
    with zlab() as lab:
        lab.start_stund()
        lab.start_miniupnpd(min_lifetime=2)
        yield lab


@pytest.fixture
def bare() -> Iterator[Lab]:
    """The same topology with no daemon at all."""
    with zlab() as lab:
        yield lab
