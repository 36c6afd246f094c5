"""Fixtures for the zero-config NAT tests: namespaces with miniupnpd, stund, a fake IMDS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from zlab import Lab, zlab


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
