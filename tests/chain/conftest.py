"""A real anvil process (started and stopped by PID) and an in-process eth-tester chain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chain_helpers import free_port

from chain.anvil import ANVIL_DEV_KEYS, AnvilNode
from chain.client import ChainClient


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    node = AnvilNode(tmp_path_factory.mktemp("anvil") / "state.json", free_port())
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def anvil_client(anvil: AnvilNode) -> ChainClient:
    return ChainClient.from_url(anvil.url, relayer_key=ANVIL_DEV_KEYS[0])


@pytest.fixture(scope="session")
def tester_client() -> ChainClient:
    return ChainClient.in_process()


@pytest.fixture(params=["eth-tester", "anvil"])
def client(request: pytest.FixtureRequest) -> ChainClient:
    name = "tester_client" if request.param == "eth-tester" else "anvil_client"
    return request.getfixturevalue(name)
