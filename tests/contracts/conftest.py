"""An in-process chain with a deployed ConsortiumRegistry, reset after every test by snapshot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from registry_helpers import EVERYONE, Deployment, deploy

from chain.client import ChainClient
from chain.registry import ConsortiumRegistry


@pytest.fixture(scope="session")
def deployment() -> Deployment:
    client = ChainClient.in_process()
    for p in EVERYONE:
        client.fund(p.address, 10**20)
    return Deployment(client, deploy(client))


@pytest.fixture
def reg(deployment: Deployment) -> Iterator[ConsortiumRegistry]:
    """The shared registry, with every change undone after the test (eth-tester snapshot)."""
    w3 = deployment.client.w3
    snapshot = w3.testing.snapshot()
    yield deployment.registry
    w3.testing.revert(snapshot)
