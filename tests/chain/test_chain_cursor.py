from __future__ import annotations

import pytest
from chain_helpers import CITY, MARY, deploy_registry
from eth_utils import keccak

from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry
from chain.cursor import EventCursor, MemoryCursorStore
from chain.events import ChainEvent


def _nodes(reg: ConsortiumRegistry, tag: str, count: int) -> list[ChainEvent]:
    """``count`` NodeRegistered events, one block each; returns them decoded from the receipts."""
    out: list[ChainEvent] = []
    for i in range(count):
        receipt = reg.register_node(
            keccak(text=f"{tag}-{i}"), CITY.address, b"\x05" * 32, sender_key=MARY.key
        )
        out += reg.decode_events(receipt)
    return out


def _cursor(reg: ConsortiumRegistry, store: MemoryCursorStore, start: int, **kw) -> EventCursor:
    return EventCursor(reg.client, [(reg.address, reg.abi)], store, start_block=start, **kw)


def test_it_delivers_events_in_chain_order_in_bounded_batches(client: ChainClient) -> None:
    start = client.head() + 1
    reg = deploy_registry(client)
    expected = _nodes(reg, "order", 5)
    seen: list[ChainEvent] = []
    results = _cursor(reg, MemoryCursorStore(), start, batch_blocks=3).catch_up(seen.append)
    assert [e.name for e in seen].count("MemberAdmitted") == 4  # the founders, at deployment
    assert [e for e in seen if e.name == "NodeRegistered"] == expected
    assert [e.key for e in seen] == sorted(e.key for e in seen)
    assert all(r.to_block - r.from_block < 3 for r in results)
    assert results[-1].caught_up and results[-1].to_block == client.head()
    assert seen[0].address == reg.address and seen[0].block_hash == client.block_hash(
        seen[0].block_number
    )


def test_it_resumes_after_the_stored_block(client: ChainClient) -> None:
    start = client.head() + 1
    reg = deploy_registry(client)
    store = MemoryCursorStore()
    first: list[ChainEvent] = []
    _cursor(reg, store, start).catch_up(first.append)
    assert store.block == client.head() and store.block_hash == client.block_hash(client.head())
    later = _nodes(reg, "resume", 2)
    again: list[ChainEvent] = []
    result = _cursor(reg, store, start).poll(again.append)  # a fresh process, same store
    assert again == later
    assert (result.processed, result.rewound) == (2, False)
    assert _cursor(reg, store, start).poll(again.append).processed == 0


def test_it_redelivers_a_batch_whose_handler_failed(client: ChainClient) -> None:
    start = client.head() + 1
    reg = deploy_registry(client)
    events = _nodes(reg, "retry", 3)
    store = MemoryCursorStore()
    _cursor(reg, store, start).catch_up(lambda e: None)
    before = store.load()
    _nodes(reg, "retry-more", 2)
    handled: list[ChainEvent] = []

    def flaky(event: ChainEvent) -> None:
        handled.append(event)
        if len(handled) == 2:
            raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        _cursor(reg, store, start).poll(flaky)
    assert store.load() == before  # nothing saved: the batch is delivered again
    redelivered: list[ChainEvent] = []
    _cursor(reg, store, start).poll(redelivered.append)
    assert redelivered[:1] == handled[:1] and len(redelivered) == 2
    assert events  # the earlier events were not delivered again


def test_it_rewinds_when_the_chain_reorganises(anvil_client: ChainClient) -> None:
    client = anvil_client
    start = client.head() + 1
    reg = deploy_registry(client)
    store = MemoryCursorStore()
    seen: dict[tuple[int, int], ChainEvent] = {}  # an idempotent handler: keyed by position

    def handle(event: ChainEvent) -> None:
        seen[event.key] = event

    _cursor(reg, store, start).catch_up(handle)
    snapshot = client.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    orphaned = _nodes(reg, "orphan", 3)
    _cursor(reg, store, start).catch_up(handle)
    assert store.block == orphaned[-1].block_number
    client.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    canonical = _nodes(reg, "canonical", 4)  # a longer, different branch
    results = _cursor(reg, store, start, reorg_depth=8).catch_up(handle)
    assert results[0].rewound
    assert store.block_hash == client.block_hash(client.head())
    current = {e.key: e for e in canonical}
    assert all(seen[k] == e for k, e in current.items())
    orphan_ids = {e.args["nodeId"] for e in orphaned}
    assert not orphan_ids & {e.args.get("nodeId") for e in seen.values()}


def test_it_rewinds_when_the_chain_got_shorter(anvil_client: ChainClient) -> None:
    client = anvil_client
    start = client.head() + 1
    reg = deploy_registry(client)
    store = MemoryCursorStore()
    snapshot = client.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    _nodes(reg, "short", 2)
    _cursor(reg, store, start).catch_up(lambda e: None)
    client.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    assert store.block is not None and store.block > client.head()
    seen: list[ChainEvent] = []
    result = _cursor(reg, store, start).poll(seen.append)
    assert result.rewound and result.to_block == client.head()
    assert {e.name for e in seen} == {"MemberAdmitted"}


def test_it_rewinds_on_eth_tester_too(tester_client: ChainClient) -> None:
    client = tester_client
    start = client.head() + 1
    reg = deploy_registry(client)
    store = MemoryCursorStore()
    snapshot = client.w3.testing.snapshot()
    _nodes(reg, "tester-orphan", 1)
    _cursor(reg, store, start).catch_up(lambda e: None)
    client.w3.testing.revert(snapshot)
    client.w3.testing.mine(3)
    seen: list[ChainEvent] = []
    results = _cursor(reg, store, start).catch_up(seen.append)
    assert results[0].rewound
    assert "NodeRegistered" not in {e.name for e in seen}
