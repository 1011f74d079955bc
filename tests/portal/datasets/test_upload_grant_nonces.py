"""A version's grants are signed in advance, each at its signer's nonce for its (dataset,
node) pair (issue 12 item 7): a grant the chain refuses at commit leaves only its own
pair's nonce unspent, so the grants signed after it still land. A grant whose pair moved
on meanwhile is not sent, and granting it again records it."""

from __future__ import annotations

import pytest
from datasets_api_helpers import (
    NODE_PASSWORD,
    UPLOADS,
    chunk_bytes,
    create_upload,
    grant_entry,
    put_chunk,
    upload_and_commit,
)

from portal.core import chain as portal_chain
from portal.core.sync import chain_sync_run
from portal.datasets.models import Dataset, Grant, Upload
from portal.datasets.services.grants import grant_add, grant_revoke
from tests.node_keys import node_keystore
from training.ingest.dataset import chunk_file_name, package_dataset

pytestmark = pytest.mark.django_db


def _node(mary, tmp_path, label: str):
    from portal.nodes import services

    identity = node_keystore(tmp_path / label, NODE_PASSWORD, template=label).identity
    return services.node_register(
        member=mary,
        node_id=identity.node_id,
        signer_address=identity.signer_address,
        data_public_key=identity.data_public_key,
        label=label,
    )


def test_a_grant_refused_at_commit_holds_up_none_of_the_grants_signed_after_it(
    datasets_chain, member_admin, mary, node, package, tmp_path, api_as, consortium
):
    nodes = [node, _node(mary, tmp_path, "mary-2"), _node(mary, tmp_path, "mary-3")]
    api = api_as(member_admin)
    created = create_upload(api, package, [grant_entry(package, n) for n in nodes])
    assert created.status_code == 201, created.content
    upload = created.json()
    for index in range(3):
        put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
    # One governance key signed all three, each at the first nonce of its own pair.
    signed = list(Grant.objects.order_by("pk"))
    assert [g.node for g in signed] == nodes
    assert {g.signer_address for g in signed} == {mary.governance_address}
    assert [g.signature_nonce for g in signed] == [0, 0, 0]
    # The node of the grant relayed first is revoked before the commit: the chain refuses it.
    refused, later = nodes[0], nodes[1:]
    portal_chain.registry().revoke_node(refused.node_id, sender_key=consortium[0].key)
    chain_sync_run()

    committed = api.post(f"{UPLOADS}{upload['id']}/commit/")
    assert committed.status_code == 200, committed.content
    stored = Upload.objects.get(pk=upload["id"])
    assert stored.state == Upload.State.COMMITTED
    assert stored.error.startswith(f"grant to node {refused.node_id} was refused")
    assert "DatasetRegistryUnknownNode" in stored.error and ";" not in stored.error
    dataset = Dataset.objects.get()
    registry = portal_chain.datasets()
    for n in later:
        assert registry.grant_of(dataset.chain_id, n.node_id).active
    assert sorted(Grant.objects.values_list("node", "state")) == sorted(
        (n.pk, Grant.State.ACTIVE) for n in later
    )
    assert not registry.grant_of(dataset.chain_id, refused.node_id).active


def test_a_grant_whose_pair_moved_on_is_not_sent_and_granting_it_again_lands(
    datasets_chain, member_admin, mary, node, package, phantoms, tmp_path, api_as
):
    api = api_as(member_admin)
    first = upload_and_commit(api, package, [grant_entry(package, node)], tmp_path / "pkg")
    source, annotations = phantoms
    v2 = package_dataset(
        source,
        annotations,
        tmp_path / "pkg-v2",
        dataset_id=package.dataset_id,
        uid_secret=b"s" * 32,
    )
    second = _node(mary, tmp_path, "mary-2")
    created = create_upload(api, v2, [grant_entry(v2, n) for n in (node, second)])
    assert created.status_code == 201, created.content
    upload = created.json()
    pending = Grant.objects.get(version__number=2, node=node)
    assert pending.signature_nonce == 1  # the pair's v1 grant took nonce 0
    # Before the commit the v1 grant is revoked: the revocation spends the pair's nonce 1.
    grant_revoke(grant=Grant.objects.get(version__number=1, node=node), signature=None)
    for index in range(3):
        put_chunk(
            api, upload["id"], index, (tmp_path / "pkg-v2" / chunk_file_name(index)).read_bytes()
        )

    committed = api.post(f"{UPLOADS}{upload['id']}/commit/")
    assert committed.status_code == 200, committed.content
    error = Upload.objects.get(pk=upload["id"]).error
    assert error.startswith(
        f"grant to node {node.node_id} was not sent: it was signed with nonce 1"
    )
    assert "expects 2" in error and "grants/add/" in error
    registry = portal_chain.datasets()
    chain_id = first["chain_id"]
    assert registry.grant_of(chain_id, second.node_id).active  # its own pair: unaffected
    assert not registry.grant_of(chain_id, node.node_id).active

    dataset = Dataset.objects.get()
    grant = grant_add(
        dataset=dataset, node=node, wrapped_key=grant_entry(v2, node)["wrapped_key"], signature=None
    )
    assert grant.state == Grant.State.ACTIVE and grant.signature_nonce == 2
    on_chain = registry.grant_of(chain_id, node.node_id)
    assert on_chain.active and "0x" + on_chain.grant_hash.hex() == grant.grant_hash
