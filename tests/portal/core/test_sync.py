"""The mirror: one table of handlers, one path for receipts and the sync, rows from event
fields alone, a cursor per contract, and a reorg's new branch mirrored after the rewind."""

from __future__ import annotations

import hashlib
import importlib

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from chain.artifacts import load_artifact
from chain.client import ChainClient
from chain.dataset_registry import DatasetRegistry
from portal.consortium import services
from portal.consortium.models import Delegate, Member, Proposal, Vote
from portal.core import chain as portal_chain
from portal.core import sync
from portal.core.models import ChainEventRecord, ChainSyncState, ContractDeployment
from portal.nodes.models import Node

pytestmark = pytest.mark.django_db

# OpenZeppelin's ERC-5267 event: the domain never changes after deployment.
UNMIRRORED = {"EIP712DomainChanged"}


def _mirrored_rows() -> dict[str, list[dict[str, object]]]:
    def rows(model, *exclude: str) -> list[dict[str, object]]:
        return [
            {k: v for k, v in row.items() if k not in ("id", "updated_at", *exclude)}
            for row in model.objects.order_by("pk").values()
        ]

    return {
        "members": rows(Member),
        "proposals": rows(Proposal),
        "votes": rows(Vote, "proposal_id"),
        "delegates": rows(Delegate),
        "nodes": rows(Node),
    }


def test_every_state_changing_event_has_one_handler() -> None:
    for contract in (portal_chain.REGISTRY, portal_chain.DATASETS):
        events = {i["name"] for i in load_artifact(contract).abi if i.get("type") == "event"}
        assert {(contract, name) for name in events - UNMIRRORED} <= sync.handled()


def test_a_second_handler_for_an_event_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="NodeRegistered of ConsortiumRegistry"):
        sync.register({(portal_chain.REGISTRY, "NodeRegistered"): lambda event: None})


def _history(consortium) -> None:
    """A node, a delegate, a removal proposal with a vote: relayed and mirrored from receipts."""
    from portal.consortium.delegates import delegate_set
    from portal.nodes import services as node_services

    mary, north, city = (Member.objects.get(governance_address=f.address) for f in consortium)
    node_services.node_register(
        member=mary,
        node_id="0x" + hashlib.sha256(b"sync:node").hexdigest(),
        signer_address=consortium[1].address,
        data_public_key="0x" + "ab" * 32,
    )
    delegate_set(member=north, address="0x" + "5e" * 20, scope=Delegate.Scope.DATA)
    proposal = services.removal_propose(proposer=mary, member=city)
    services.vote_cast(voter=north, proposal=proposal, support=False)


def test_the_sync_rebuilds_the_mirror_from_events_without_a_view_call(
    consortium, chain_client: ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _history(consortium)
    registry = portal_chain.registry()
    datasets = DatasetRegistry.deploy(chain_client, registry_address=registry.address)
    ContractDeployment.objects.create(
        name=portal_chain.DATASETS,
        chain_id=chain_client.chain_id,
        address=datasets.address,
        block_number=chain_client.head(),
    )
    before = _mirrored_rows()
    assert before["nodes"] and before["votes"] and before["delegates"]
    for model in (Vote, Proposal, Delegate, Node, ChainEventRecord, ChainSyncState):
        model.objects.all().delete()
    Member.objects.update(status=Member.Status.APPLIED, chain_member_id=None)

    def no_view(*args: object, **kwargs: object) -> None:
        raise AssertionError("a handler called a view")

    monkeypatch.setattr(ChainClient, "call", no_view)
    result = sync.chain_sync_run()
    assert not result.error
    assert _mirrored_rows() == before
    states = {s.name: s for s in ChainSyncState.objects.all()}
    assert set(states) == {portal_chain.REGISTRY, portal_chain.DATASETS}
    head = chain_client.head()
    assert states[portal_chain.REGISTRY].last_block == head
    assert states[portal_chain.DATASETS].last_block == head
    assert states[portal_chain.REGISTRY].events_processed == result.processed


def test_a_receipt_is_mirrored_through_the_same_handlers(consortium) -> None:
    mary, north, city = (Member.objects.get(governance_address=f.address) for f in consortium)
    cursor = ChainSyncState.objects.get(name=portal_chain.REGISTRY).last_block
    proposal = services.removal_propose(proposer=mary, member=city)
    assert ChainSyncState.objects.get(name=portal_chain.REGISTRY).last_block == cursor
    assert proposal.status == Proposal.Status.OPEN and proposal.eligible == 3
    proposal = services.vote_cast(voter=north, proposal=proposal, support=True)
    assert (proposal.yes, proposal.no) == (1, 0)
    assert ChainEventRecord.objects.filter(name="VoteCast").count() == 1
    sync.chain_sync_run()  # the same events again, in chain order: nothing changes
    assert Proposal.objects.get(pk=proposal.pk).yes == 1
    assert ChainEventRecord.objects.filter(name="VoteCast").count() == 1


def test_a_reorg_rewinds_and_mirrors_the_new_branch(consortium, chain_client: ChainClient) -> None:
    registry = portal_chain.registry()
    node_id = "0x" + hashlib.sha256(b"sync:reorg").hexdigest()
    snapshot = chain_client.w3.testing.snapshot()
    founder = consortium[0].key
    registry.register_node(node_id, consortium[1].address, b"\x01" * 32, sender_key=founder)
    sync.chain_sync_run()
    assert Node.objects.get(node_id=node_id).signer_address == consortium[1].address
    chain_client.w3.testing.revert(snapshot)
    # The new branch registers the same node with another signer, a block later.
    chain_client.w3.testing.mine(1)
    registry.register_node(node_id, consortium[2].address, b"\x02" * 32, sender_key=founder)
    result = sync.chain_sync_run()
    assert result.rewound
    node = Node.objects.get(node_id=node_id)
    assert node.signer_address == consortium[2].address
    assert node.data_public_key == "0x" + "02" * 32
    assert node.registered_block == chain_client.head()
    assert ChainSyncState.objects.get(name=portal_chain.REGISTRY).reorgs == 1


def test_the_old_single_cursor_moves_to_each_contract() -> None:
    migration = importlib.import_module("portal.core.migrations.0003_chain_sync_per_contract")
    ChainSyncState.objects.create(
        name="registry", last_block=40, last_block_hash="0x" + "aa" * 32, events_processed=7
    )
    migration.split(apps, None)
    states = {s.name: s for s in ChainSyncState.objects.all()}
    assert set(states) == {portal_chain.REGISTRY, portal_chain.DATASETS}
    assert {(s.last_block, s.last_block_hash) for s in states.values()} == {(40, "0x" + "aa" * 32)}
    assert states[portal_chain.REGISTRY].events_processed == 7
    migration.join(apps, None)
    [state] = ChainSyncState.objects.all()
    assert (state.name, state.last_block, state.events_processed) == ("registry", 40, 7)
