"""A data steward's Data delegate key signs the grants to its member's own nodes; a grant
to another member's node ("server mode") still takes the governance key.

Demo keystores are off throughout: nothing may fall back on the governance key unasked.
"""

from __future__ import annotations

from typing import Any

import pytest
from datasets_api_helpers import (
    TYPED,
    UPLOADS,
    assert_json_error,
    chunk_bytes,
    create_upload,
    grant_entry,
    put_chunk,
    sign,
)

from portal.datasets.models import Dataset, Grant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_demo_keystores(settings, consortium, node, other_node) -> None:
    # After the fixtures that use them: the consortium's, and the nodes' registrations.
    settings.DEMO_KEYSTORES = False


def _typed(api, package, steward, grants: list[dict[str, str]]) -> dict[str, Any]:
    response = api.post(
        TYPED,
        {
            "dataset_id": package.dataset_id,
            "manifest_sha256": "0x" + package.manifest_sha256,
            "signer": steward.address,
            "grants": grants,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def _commit(api, upload: dict[str, Any], tmp_path) -> dict[str, Any]:
    for index in range(upload["expected_chunks"]):
        put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
    response = api.post(f"{UPLOADS}{upload['id']}/commit/")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_typed_data_names_who_signs_each_grant_at_its_own_pairs_nonce(
    datasets_chain, steward, node, other_node, package, api_as, consortium
):
    api = api_as(steward.user)
    grants = [grant_entry(package, other_node), grant_entry(package, node)]
    typed = _typed(api, package, steward, grants)
    assert typed["signer"] == steward.address
    assert typed["grant_signers"] == [consortium[0].address, steward.address]
    nonces = [t["message"]["nonce"] for t in (typed["manifest"], *typed["grants"])]
    # The steward's anchor in its own sequence; each grant first in its (dataset, node) pair's.
    assert nonces == [0, 0, 0]


def test_a_steward_signs_the_manifest_and_the_grant_to_an_own_node(
    datasets_chain, steward, node, package, api_as, tmp_path
):
    api = api_as(steward.user)
    grants = [grant_entry(package, node)]
    typed = _typed(api, package, steward, grants)
    grants[0]["signature"] = sign(steward.key, typed["grants"][0])
    created = create_upload(
        api,
        package,
        grants,
        signer=steward.address,
        signature=sign(steward.key, typed["manifest"]),
    )
    assert created.status_code == 201, created.content
    body = _commit(api, created.json(), tmp_path)
    assert body["upload"]["error"] == ""
    grant = Grant.objects.get()
    assert (grant.state, grant.signer_address, grant.cross_member) == (
        Grant.State.ACTIVE,
        steward.address,
        False,
    )
    assert datasets_chain.grant_of(body["dataset"]["chain_id"], node.node_id).active


def test_a_steward_upload_refuses_an_unsigned_grant_to_another_members_node(
    datasets_chain, steward, node, other_node, package, api_as
):
    api = api_as(steward.user)
    grants = [grant_entry(package, node), grant_entry(package, other_node)]
    typed = _typed(api, package, steward, grants)
    grants[0]["signature"] = sign(steward.key, typed["grants"][0])
    response = create_upload(
        api,
        package,
        grants,
        signer=steward.address,
        signature=sign(steward.key, typed["manifest"]),
        demo_keystore=False,
    )
    assert_json_error(response, 400, f"grant to {other_node.node_id}", "signature is required")
    assert not Dataset.objects.exists()


def test_a_steward_upload_refuses_another_members_grant_signed_by_the_steward(
    datasets_chain, steward, node, other_node, package, api_as
):
    api = api_as(steward.user)
    grants = [grant_entry(package, node), grant_entry(package, other_node)]
    typed = _typed(api, package, steward, grants)
    grants[0]["signature"] = sign(steward.key, typed["grants"][0])
    grants[1]["signature"] = sign(steward.key, typed["grants"][1])  # not the governance key
    response = create_upload(
        api,
        package,
        grants,
        signer=steward.address,
        signature=sign(steward.key, typed["manifest"]),
        demo_keystore=False,
    )
    assert_json_error(
        response, 400, "City General", "governance key", "leave it out", "grants/add/"
    )
    assert not Dataset.objects.exists()


def test_a_steward_upload_refuses_an_own_grant_signed_by_another_key(
    datasets_chain, steward, node, package, api_as, consortium
):
    api = api_as(steward.user)
    grants = [grant_entry(package, node)]
    typed = _typed(api, package, steward, grants)
    grants[0]["signature"] = sign(consortium[0].key, typed["grants"][0])  # not the plan's signer
    response = create_upload(
        api,
        package,
        grants,
        signer=steward.address,
        signature=sign(steward.key, typed["manifest"]),
    )
    assert_json_error(response, 400, "grant to node", f"not by {steward.address}")


@pytest.fixture
def anchored(datasets_chain, steward, package, api_as, tmp_path) -> dict[str, Any]:
    """Uploaded by the steward with no grant at all."""
    api = api_as(steward.user)
    typed = _typed(api, package, steward, [])
    created = create_upload(
        api, package, [], signer=steward.address, signature=sign(steward.key, typed["manifest"])
    )
    assert created.status_code == 201, created.content
    return _commit(api, created.json(), tmp_path)["dataset"]


def test_a_steward_adds_a_grant_to_an_own_node_later(
    anchored, steward, node, package, api_as, datasets_chain
):
    api = api_as(steward.user)
    base = f"/api/v1/datasets/{anchored['id']}/grants/add/"
    entry = {**grant_entry(package, node), "signer": steward.address}
    typed = api.post(base + "typed-data/", entry, format="json")
    assert typed.status_code == 200, typed.content
    signature = sign(steward.key, typed.json())
    response = api.post(base, {**entry, "signature": signature}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["cross_member"] is False
    assert Grant.objects.get().signer_address == steward.address
    assert datasets_chain.grant_of(anchored["chain_id"], node.node_id).active


def test_a_steward_cannot_add_a_grant_to_another_members_node(
    anchored, steward, other_node, package, api_as, member_admin, consortium, datasets_chain
):
    base = f"/api/v1/datasets/{anchored['id']}/grants/add/"
    entry = {**grant_entry(package, other_node), "signer": steward.address}
    for url in (base + "typed-data/", base):
        response = api_as(steward.user).post(url, {**entry, "signature": "0x" + "11" * 65})
        assert_json_error(response, 400, "another member's node", "governance key")
    # The admin signs the same grant with the governance key (no signer: governance).
    admin = api_as(member_admin)
    entry.pop("signer")
    typed = admin.post(base + "typed-data/", entry, format="json").json()
    response = admin.post(
        base, {**entry, "signature": sign(consortium[0].key, typed)}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["cross_member"] is True
    assert datasets_chain.grant_of(anchored["chain_id"], other_node.node_id).active


def test_a_disabled_delegate_cannot_add_a_grant(
    anchored, steward, node, package, api_as, consortium
):
    from chain.consortium_registry import Scope
    from portal.core import chain as portal_chain
    from portal.core.sync import chain_sync_run

    portal_chain.registry().set_delegate(
        steward.address, Scope.DATA, False, sender_key=consortium[0].key
    )
    chain_sync_run()
    entry = {**grant_entry(package, node), "signer": steward.address}
    response = api_as(steward.user).post(
        f"/api/v1/datasets/{anchored['id']}/grants/add/typed-data/", entry, format="json"
    )
    assert_json_error(response, 400, "neither", "Data delegates")


def _steward_upload(api, package, steward, node, tmp_path) -> dict[str, Any]:
    """Uploaded and committed by the steward, granted to ``node``; the dataset as the API says."""
    grants = [grant_entry(package, node)]
    typed = _typed(api, package, steward, grants)
    grants[0]["signature"] = sign(steward.key, typed["grants"][0])
    created = create_upload(
        api, package, grants, signer=steward.address, signature=sign(steward.key, typed["manifest"])
    )
    return _commit(api, created.json(), tmp_path)["dataset"]


def _fetch(node, node_keys, dataset: dict[str, Any], tmp_path, chain_client):
    from datasets_api_helpers import node_side, pinned_record

    from portal.nodes.agent.fetch import fetch_and_verify

    side = node_side(node, node_keys)
    return fetch_and_verify(
        client=side.client,
        keystore=side.keystore,
        cache_dir=tmp_path / "cache",
        dataset_id=dataset["id"],
        chain=chain_client,
        record=pinned_record(chain_client),
    )


def test_the_node_decrypts_a_version_its_members_steward_granted(
    datasets_chain, steward, node, node_keys, package, api_as, tmp_path, chain_client
):
    dataset = _steward_upload(api_as(steward.user), package, steward, node, tmp_path)
    result = _fetch(node, node_keys, dataset, tmp_path, chain_client)
    assert result.instances == 20 and result.anchor_checked_on_chain


def test_the_node_refuses_a_grant_not_signed_by_the_signer_the_portal_names(
    datasets_chain, steward, node, node_keys, package, api_as, tmp_path, chain_client, consortium
):
    from portal.nodes.agent.fetch import DatasetRefused

    dataset = _steward_upload(api_as(steward.user), package, steward, node, tmp_path)
    Grant.objects.update(signer_address=consortium[0].address)
    with pytest.raises(DatasetRefused, match=f"signed by {steward.address}, not by"):
        _fetch(node, node_keys, dataset, tmp_path, chain_client)
