from __future__ import annotations

import pytest

from portal.core import chain as portal_chain
from portal.core.models import ChainEventRecord, ChainSyncState
from portal.core.sync import chain_sync_run, mirror
from portal.nodes.models import Node

pytestmark = pytest.mark.django_db


def _registry_events():
    registry = portal_chain.registry()
    # From the deployment block: eth-tester's get_logs slows down with the whole chain's length.
    start = portal_chain.deployment().block_number
    logs = registry.client.w3.eth.get_logs({"address": registry.address, "fromBlock": start})
    return registry._decoder.decode_all(logs)


def test_it_mirrors_a_registered_node_once(node):
    assert Node.objects.count() == 1
    assert ChainEventRecord.objects.filter(name="NodeRegistered").count() == 1
    assert node.registered_block > 0


def test_it_mirrors_the_relayed_receipt_without_a_sync(consortium, node):
    """The registration's receipt was mirrored at once: the cursor has not moved past it."""
    state = ChainSyncState.objects.get(name=portal_chain.REGISTRY)
    assert state.last_block is not None and state.last_block < node.registered_block
    before = Node.objects.values().get(pk=node.pk)
    assert chain_sync_run().processed == 1
    assert Node.objects.values().get(pk=node.pk) == before


def test_it_is_idempotent(node):
    before = Node.objects.values().get(pk=node.pk)
    mirror(portal_chain.REGISTRY, _registry_events())
    chain_sync_run()
    mirror(portal_chain.REGISTRY, _registry_events())
    assert Node.objects.count() == 1
    assert Node.objects.values().get(pk=node.pk) == before


def test_a_revoked_node_loses_its_token_at_once(consortium, node):
    from portal.core.models import ApiToken
    from portal.core.sync import mirror_receipt
    from portal.nodes import services

    services.node_token_issue(node=node)
    node.refresh_from_db()
    assert ApiToken.objects.filter(user_id=node.user_id).exists()
    receipt = portal_chain.registry().revoke_node(node.node_id, sender_key=consortium[0].key)
    mirror_receipt(receipt)
    node.refresh_from_db()
    assert not node.active
    assert not ApiToken.objects.filter(user_id=node.user_id).exists()
    mirror(portal_chain.REGISTRY, _registry_events())  # the whole history again, in order
    node.refresh_from_db()
    assert not node.active
