"""An in-process chain with a deployed ConsortiumRegistry, reset after every test by snapshot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dataset_helpers import CITY_STEWARD, OPERATOR, STEWARD, set_up_members
from registry_helpers import EVERYONE, Deployment, deploy

from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry
from chain.dataset_registry import DatasetRegistry


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


@pytest.fixture(scope="module")
def deployed(deployment: Deployment) -> Iterator[DatasetRegistry]:
    """A DatasetRegistry deployed once per test file, with delegates and nodes; all undone
    after the file."""
    client = deployment.client
    snapshot = client.w3.testing.snapshot()
    for p in (STEWARD, CITY_STEWARD, OPERATOR):
        client.fund(p.address, 10**18)
    set_up_members(deployment.registry)
    yield DatasetRegistry.deploy(client, registry_address=deployment.registry.address)
    client.w3.testing.revert(snapshot)


@pytest.fixture
def ds(deployed: DatasetRegistry, reg: ConsortiumRegistry) -> DatasetRegistry:
    """The file's DatasetRegistry; ``reg`` undoes each test's changes to both contracts."""
    return deployed
