"""The chain client and contract wrappers are built once per process, on a real anvil node.

Under ASGI every request runs its sync code in a fresh thread, so each test asks
from fresh threads released together, the way concurrent requests do.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chain.anvil import ANVIL_DEV_KEYS, AnvilNode
from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry, Founder
from chain.errors import ChainUnavailable
from portal.core import chain as portal_chain
from portal.core.models import ContractDeployment

THREADS = 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    node = AnvilNode(tmp_path_factory.mktemp("anvil") / "state.json", _free_port())
    node.start()
    yield node
    node.stop()


@pytest.fixture
def on_anvil(anvil: AnvilNode, settings) -> Iterator[AnvilNode]:
    """The portal pointed at anvil through settings, as in production (no test override)."""
    settings.CHAIN_RPC_URL = anvil.url
    settings.CHAIN_RELAYER_KEY = ANVIL_DEV_KEYS[0]
    portal_chain.use_client(None)
    yield anvil


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """Every ChainClient.from_url call, counted on the way to the real one."""
    seen: list[str] = []
    real = ChainClient.from_url.__func__  # type: ignore[attr-defined]

    def counted(cls: type[ChainClient], url: str, **kwargs: Any) -> ChainClient:
        seen.append(url)
        return real(cls, url, **kwargs)

    monkeypatch.setattr(ChainClient, "from_url", classmethod(counted))
    return seen


def _in_fresh_threads(work: Callable[[], Any], count: int = THREADS) -> list[Any]:
    """Run ``work`` in ``count`` new threads released at once; re-raise the first error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_it_builds_one_client_for_every_thread(on_anvil, builds):
    clients = _in_fresh_threads(portal_chain.client)
    assert len({id(c) for c in clients}) == 1
    assert len(builds) == 1
    assert portal_chain.client() is clients[0]


def test_it_serves_concurrent_calls_through_the_shared_client(on_anvil):
    shared = portal_chain.client()
    heads = _in_fresh_threads(lambda: portal_chain.client().head())
    assert set(heads) == {shared.head()}


@pytest.mark.django_db(transaction=True)
def test_it_shares_one_registry_wrapper_that_answers_every_thread(on_anvil, tmp_path: Path):
    deployer = ChainClient.from_url(on_anvil.url, relayer_key=ANVIL_DEV_KEYS[0])
    founders = [
        Founder(
            governance="0x" + f"{i + 1:040x}",
            role=1,
            data_key="0x" + f"{i + 1:064x}",
            name_hash="0x" + f"{i + 9:064x}",
        )
        for i in range(3)
    ]
    registry = ConsortiumRegistry.deploy(
        deployer, founders=founders, quorum_bps=5000, voting_period=3600
    )
    ContractDeployment.objects.create(
        name=portal_chain.REGISTRY,
        chain_id=deployer.chain_id,
        address=registry.address,
        block_number=deployer.head(),
    )

    def member_two() -> tuple[int, str]:
        wrapper = portal_chain.registry()
        return id(wrapper), wrapper.member(2).governance.lower()

    answers = _in_fresh_threads(member_two)
    assert {wrapper_id for wrapper_id, _ in answers} == {id(portal_chain.registry())}
    assert {governance for _, governance in answers} == {founders[1].governance}


def test_it_caches_no_failed_build_and_follows_a_new_url(on_anvil, settings, builds):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    with pytest.raises(ChainUnavailable):
        portal_chain.client()
    settings.CHAIN_RPC_URL = on_anvil.url
    first = portal_chain.client()
    assert first.head() >= 0
    assert portal_chain.client() is first
    assert builds == ["http://127.0.0.1:9", on_anvil.url]
