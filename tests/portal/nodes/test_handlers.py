from __future__ import annotations

import pytest

from portal.core.models import ChainEventRecord
from portal.core.sync import chain_sync_run
from portal.nodes.handlers import node_mirror
from portal.nodes.models import Node

pytestmark = pytest.mark.django_db


def test_it_mirrors_a_registered_node_once(node):
    assert Node.objects.count() == 1
    assert ChainEventRecord.objects.filter(name="NodeRegistered").count() == 1
    assert node.registered_block > 0


def test_it_is_idempotent(node):
    before = Node.objects.values().get(pk=node.pk)
    node_mirror(node.node_id, block=node.registered_block)
    node_mirror(node.node_id)
    chain_sync_run()
    assert Node.objects.count() == 1
    assert Node.objects.values().get(pk=node.pk) == before


def test_it_ignores_unknown_nodes(consortium):
    assert node_mirror("0x" + "11" * 32) is None
    assert not Node.objects.exists()
