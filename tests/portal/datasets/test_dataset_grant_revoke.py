"""Revoking one version's grant to one node: on the owner's page and through the API.

The chain keeps one grant per dataset and node, so a node's grant on a newer version
replaces its grant on an older one (the mirror shows it as replaced). The dataset
here: v1 granted to the owner's node and to another member's node (server mode), v2
to the owner's node only.
"""

from __future__ import annotations

from typing import Any

import pytest
from datasets_api_helpers import (
    assert_json_error,
    grant_entry,
    node_api,
    sign,
    upload_and_commit,
)
from django.urls import reverse

from portal.datasets.models import Grant
from tests.factories import messages_of, signed_in
from training.ingest.dataset import package_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(
    datasets_chain, member_admin, node, other_node, package, phantoms, tmp_path, api_as
) -> dict[str, Any]:
    api = api_as(member_admin)
    grants = [grant_entry(package, node), grant_entry(package, other_node)]
    upload_and_commit(api, package, grants, tmp_path / "pkg")
    source, annotations = phantoms
    second = package_dataset(
        source,
        annotations,
        tmp_path / "pkg-v2",
        dataset_id=package.dataset_id,
        uid_secret=b"s" * 32,
    )
    return upload_and_commit(api, second, [grant_entry(second, node)], tmp_path / "pkg-v2")


def _grant(dataset: dict[str, Any], version: int, node) -> Grant:
    return Grant.objects.get(version__dataset_id=dataset["id"], version__number=version, node=node)


def _states(dataset: dict[str, Any]) -> dict[tuple[int, str], str]:
    grants = Grant.objects.filter(version__dataset_id=dataset["id"]).select_related("node")
    return {(g.version.number, g.node.label): g.state for g in grants}


def _in_force(chain, dataset: dict[str, Any], grant: Grant) -> bool:
    on_chain = chain.grant_of(dataset["chain_id"], grant.node.node_id)
    return on_chain.active and "0x" + on_chain.grant_hash.hex() == grant.grant_hash


def _detail(dataset: dict[str, Any]) -> str:
    return reverse("dataset-detail", args=[dataset["id"]])


def _revoke_form(version: int, node, **extra: str) -> dict[str, Any]:
    return {"action": "revoke", "version": str(version), "node_id": node.node_id, **extra}


def test_it_shows_a_row_per_grant_with_its_mode_and_a_revoke_per_active_grant(
    two_versions, member_admin, node, other_node
):
    page = signed_in(member_admin).get(_detail(two_versions))
    html = page.content.decode()
    assert _states(two_versions) == {
        (2, "mary-1"): "active",
        (1, "mary-1"): "replaced",
        (1, "city-1"): "active",
    }
    for version, n in ((2, node), (1, node), (1, other_node)):
        assert f'data-testid="grant-v{version}-{n.node_id}"' in html
    assert html.count(">own</span>") == 2 and html.count(">server</span>") == 1
    assert "Replaced by a newer grant" in html
    assert html.count('name="action" value="revoke"') == 2  # the active grants only
    assert 'name="version" value="1"' in html and 'name="version" value="2"' in html


def test_it_revokes_one_versions_grant_and_leaves_the_others_in_force(
    two_versions, member_admin, node, other_node, datasets_chain
):
    client = signed_in(member_admin)
    response = client.post(
        _detail(two_versions), _revoke_form(1, other_node, demo="1"), follow=True
    )
    assert any("grant of v1 to node city-1 is revoked" in m for m in messages_of(response))
    revoked = _grant(two_versions, 1, other_node)
    assert revoked.state == Grant.State.REVOKED and revoked.revoked_tx
    assert not datasets_chain.grant_of(two_versions["chain_id"], other_node.node_id).active
    assert revoked.revoked_tx[:14] in response.content.decode()
    # The owner's node keeps its grant on v2, on chain and in the mirror; v1's stays replaced.
    assert _in_force(datasets_chain, two_versions, _grant(two_versions, 2, node))
    assert _states(two_versions) == {
        (2, "mary-1"): "active",
        (1, "mary-1"): "replaced",
        (1, "city-1"): "revoked",
    }
    manifest = f"/api/v1/datasets/{two_versions['id']}/node/manifest/"
    assert node_api(node).get(manifest).json()["version"] == 2
    assert_json_error(node_api(other_node).get(manifest), 403, "no active grant")


def test_a_replaced_grant_is_not_revoked_and_the_newer_one_stays(
    two_versions, member_admin, node, datasets_chain
):
    client = signed_in(member_admin)
    typed = client.post(
        reverse("dataset-revoke-typed-data", args=[two_versions["id"]]),
        {"version": "1", "node_id": node.node_id},
    )
    assert typed.status_code == 400 and "replaced" in typed.json()["error"]
    response = client.post(_detail(two_versions), _revoke_form(1, node, demo="1"), follow=True)
    assert response.status_code == 200
    assert any("no active grant on v1" in m and "replaced" in m for m in messages_of(response))
    assert _in_force(datasets_chain, two_versions, _grant(two_versions, 2, node))
    assert _grant(two_versions, 2, node).state == Grant.State.ACTIVE


def test_revoking_the_same_grant_twice_is_a_message(two_versions, member_admin, node):
    client = signed_in(member_admin)
    form = _revoke_form(2, node, demo="1")
    first = client.post(_detail(two_versions), form, follow=True)
    assert any("is revoked" in m for m in messages_of(first)), messages_of(first)
    again = client.post(_detail(two_versions), form, follow=True)
    assert again.status_code == 200
    assert any("already revoked" in m for m in messages_of(again)), messages_of(again)
    unknown = client.post(_detail(two_versions), _revoke_form(7, node, demo="1"), follow=True)
    assert any("holds no grant on v7" in m for m in messages_of(unknown))
    typed = client.post(
        reverse("dataset-revoke-typed-data", args=[two_versions["id"]]),
        {"version": "2", "node_id": node.node_id},
    )
    assert typed.status_code == 400 and "already revoked" in typed.json()["error"]


def test_the_owner_revokes_one_version_with_a_wallet_signature(
    two_versions, member_admin, other_node, consortium, datasets_chain
):
    client = signed_in(member_admin)
    answer = client.post(
        reverse("dataset-revoke-typed-data", args=[two_versions["id"]]),
        {"version": "1", "node_id": other_node.node_id},
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["typed"]["primaryType"] == "RevokeGrant"
    assert body["typed"]["message"]["nodeId"] == other_node.node_id
    signature = sign(consortium[0].key, body["typed"])
    form = _revoke_form(1, other_node, signature=signature)
    response = client.post(_detail(two_versions), form, follow=True)
    assert any("is revoked" in m for m in messages_of(response)), messages_of(response)
    assert not datasets_chain.grant_of(two_versions["chain_id"], other_node.node_id).active


def test_another_member_and_the_outsider_cannot_revoke(
    two_versions, second_admin, outsider, node, datasets_chain
):
    form = _revoke_form(2, node, demo="1")
    typed_url = reverse("dataset-revoke-typed-data", args=[two_versions["id"]])
    client = signed_in(second_admin)
    response = client.post(_detail(two_versions), form, follow=True)
    assert any("only St. Mary's Hospital's admin" in m for m in messages_of(response))
    typed = client.post(typed_url, {"version": "2", "node_id": node.node_id})
    assert typed.status_code == 403 and "only" in typed.json()["error"]
    assert signed_in(outsider).post(_detail(two_versions), form).status_code == 403
    assert signed_in(outsider).post(typed_url, {"node_id": node.node_id}).status_code == 404
    assert _grant(two_versions, 2, node).state == Grant.State.ACTIVE
    assert _in_force(datasets_chain, two_versions, _grant(two_versions, 2, node))


def test_the_api_revokes_one_versions_grant(
    two_versions, member_admin, second_admin, outsider, node, other_node, api_as, datasets_chain
):
    base = f"/api/v1/datasets/{two_versions['id']}/grants/{other_node.node_id}/revoke/"
    for user, status in ((second_admin, 403), (outsider, 403)):
        assert_json_error(api_as(user).post(base, {"version": 1}), status)
    owner = api_as(member_admin)
    typed = owner.post(base + "typed-data/", {"version": 1}, format="json")
    assert typed.status_code == 200 and typed.json()["primaryType"] == "RevokeGrant"
    demo = {"demo_keystore": True}
    assert_json_error(
        owner.post(base, {"version": 3, **demo}, format="json"), 404, "no grant on v3"
    )
    response = owner.post(base, {"version": 1, **demo}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 1 and response.json()["state"] == "revoked"
    assert_json_error(
        owner.post(base, {"version": 1, **demo}, format="json"), 400, "already revoked"
    )
    assert _in_force(datasets_chain, two_versions, _grant(two_versions, 2, node))
    grants = owner.get(f"/api/v1/datasets/{two_versions['id']}/grants/").json()["results"]
    assert sorted((g["version"], g["cross_member"], g["state"]) for g in grants) == [
        (1, False, "replaced"),
        (1, True, "revoked"),
        (2, False, "active"),
    ]
