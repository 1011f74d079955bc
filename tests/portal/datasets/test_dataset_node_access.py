from __future__ import annotations

import pytest
from datasets_api_helpers import (
    UPLOADS,
    assert_json_error,
    chunk_bytes,
    create_upload,
    grant_entry,
    node_side,
    put_chunk,
    token_for,
)
from rest_framework.test import APIClient

from portal.datasets.fetch import DatasetRefused, fetch_and_verify
from portal.datasets.models import AccessLog
from portal.nodes.client import PortalError
from training.annotations import parse_annotations

pytestmark = pytest.mark.django_db

# The owner asks the demo keystores to sign (a request without a signature is refused).
DEMO = {"demo_keystore": True}


@pytest.fixture
def anchored(datasets_chain, member_admin, node, package, tmp_path, api_as):
    """The phantom package uploaded, committed and granted to the owner's node."""
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    for index in range(upload["expected_chunks"]):
        put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
    response = api.post(f"{UPLOADS}{upload['id']}/commit/")
    assert response.status_code == 200, response.content
    return response.json()["dataset"]


def _log(dataset_id: str, action: str) -> list[AccessLog]:
    return list(AccessLog.objects.filter(dataset_id=dataset_id, action=action))


def test_it_lets_a_granted_node_fetch_verify_and_decrypt(
    anchored, node, node_keys, package, tmp_path, chain_client, member_admin, api_as
):
    side = node_side(node, node_keys)
    result = fetch_and_verify(
        client=side.client,
        keystore=side.keystore,
        cache_dir=tmp_path / "cache",
        dataset_id=anchored["id"],
        chain=chain_client,
    )
    assert result.version == 1 and result.instances == 20 and result.anchor_checked_on_chain
    files = sorted(p.name for p in (result.folder / "instances").iterdir())
    assert len(files) == 20 and all(name.endswith(".dcm") for name in files)
    annotations = (result.folder / "annotations.json").read_bytes()
    sizes = {name.removesuffix(".dcm"): (256, 256) for name in files}
    assert sum(len(b) for b in parse_annotations(annotations, sizes).instances.values()) == 26
    assert not (tmp_path / "cache" / anchored["id"] / "v1.ciphertext").exists()

    releases = _log(anchored["id"], "release")
    assert sorted(e.what for e in releases) == ["chunk", "chunk", "chunk", "manifest"]
    assert all(e.node_id == node.pk for e in releases)
    assert [e.detail for e in _log(anchored["id"], "decrypt")] == [
        "20 instances verified and decrypted"
    ]
    # The owner sees the log; no other member does.
    log = api_as(member_admin).get(f"/api/v1/datasets/{anchored['id']}/access-log/").json()
    assert {e["action"] for e in log} == {"release", "decrypt"}
    assert all(e["node_id"] == node.node_id for e in log)


def test_it_refuses_and_logs_a_node_without_a_grant(
    anchored, other_node, other_node_keys, tmp_path
):
    side = node_side(other_node, other_node_keys)
    with pytest.raises(PortalError) as refused:
        fetch_and_verify(
            client=side.client,
            keystore=side.keystore,
            cache_dir=tmp_path / "cache",
            dataset_id=anchored["id"],
        )
    assert refused.value.status == 403 and "no active grant" in refused.value.message
    with pytest.raises(PortalError):
        side.client.dataset_chunk(anchored["id"], 1, 0)
    refusals = _log(anchored["id"], "refuse")
    assert [e.what for e in refusals] == ["chunk", "manifest"]
    assert all(e.node_id == other_node.pk for e in refusals)
    assert not _log(anchored["id"], "release")


def test_it_refuses_the_dataset_when_a_chunk_was_tampered_with(anchored, node, node_keys, tmp_path):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from portal.datasets.models import chunk_storage_path

    path = chunk_storage_path(anchored["id"], 1, 1)
    data = bytearray(default_storage.open(path).read())
    data[-1] ^= 1
    default_storage.delete(path)
    default_storage.save(path, ContentFile(bytes(data)))
    side = node_side(node, node_keys)
    with pytest.raises(DatasetRefused, match="chunk 1"):
        fetch_and_verify(
            client=side.client,
            keystore=side.keystore,
            cache_dir=tmp_path / "cache",
            dataset_id=anchored["id"],
        )
    reports = [e for e in _log(anchored["id"], "refuse") if e.what == "dataset"]
    assert len(reports) == 1 and "chunk 1" in reports[0].detail
    assert not (tmp_path / "cache" / anchored["id"] / "v1").exists()


def test_withdrawal_stops_releases(anchored, node, member_admin, second_admin, api_as, tmp_path):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(node)}")
    chunk = f"/api/v1/datasets/{anchored['id']}/node/chunks/0/?version=1"
    assert api.get(chunk).status_code == 200

    withdraw = f"/api/v1/datasets/{anchored['id']}/withdraw/"
    assert_json_error(api_as(second_admin).post(withdraw, DEMO), 403, "St. Mary")
    response = api_as(member_admin).post(withdraw, DEMO)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "withdrawn"

    assert_json_error(api.get(chunk), 403, "Withdrawn")
    assert_json_error(api.get(f"/api/v1/datasets/{anchored['id']}/node/manifest/"), 403)
    catalogue = api_as(second_admin).get("/api/v1/datasets/").json()
    assert catalogue[0]["status"] == "withdrawn" and catalogue[0]["withdrawn_tx"]


@pytest.mark.parametrize("removed", ["owner", "node's member"])
def test_nothing_is_released_once_a_member_is_removed(anchored, node, other_node, removed):
    """The mirror says what the chain says after a removal vote; releases stop at once."""
    from portal.consortium.models import Member

    fetching = node if removed == "owner" else other_node
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(fetching)}")
    chunk = f"/api/v1/datasets/{anchored['id']}/node/chunks/0/?version=1"
    assert api.get(chunk).status_code == (200 if removed == "owner" else 403)
    member = fetching.member
    Member.objects.filter(pk=member.pk).update(status=Member.Status.REMOVED)

    whose = "its owner" if removed == "owner" else "the node's member"
    expected = f"{whose}, {member.name}, is removed in the consortium"
    assert_json_error(api.get(chunk), 403, expected)
    assert_json_error(api.get(f"/api/v1/datasets/{anchored['id']}/node/manifest/"), 403, expected)
    logged = _log(anchored["id"], "refuse")
    refused = {e.what for e in logged if e.node_id == fetching.pk and expected in e.detail}
    assert refused == {"chunk", "manifest"}


def test_revoking_a_grant_stops_releases_to_that_node(
    anchored, node, member_admin, api_as, datasets_chain
):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(node)}")
    manifest = f"/api/v1/datasets/{anchored['id']}/node/manifest/"
    assert api.get(manifest).status_code == 200
    owner = api_as(member_admin)
    response = owner.post(f"/api/v1/datasets/{anchored['id']}/grants/{node.node_id}/revoke/", DEMO)
    assert response.status_code == 200, response.content
    assert not datasets_chain.grant_of(anchored["chain_id"], node.node_id).active
    assert_json_error(api.get(manifest), 403, "no active grant")
    grants = owner.get(f"/api/v1/datasets/{anchored['id']}/grants/").json()
    assert [g["state"] for g in grants] == ["revoked"]


def test_it_grants_another_members_node_later_as_a_cross_member_grant(
    anchored, other_node, other_node_keys, package, member_admin, api_as, tmp_path, chain_client
):
    owner = api_as(member_admin)
    response = owner.post(
        f"/api/v1/datasets/{anchored['id']}/grants/add/",
        {**grant_entry(package, other_node), **DEMO},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["cross_member"] is True
    side = node_side(other_node, other_node_keys)
    result = fetch_and_verify(
        client=side.client,
        keystore=side.keystore,
        cache_dir=tmp_path / "cache",
        dataset_id=anchored["id"],
        chain=chain_client,
    )
    assert result.instances == 20


def test_a_person_cannot_use_the_node_routes(anchored, member_admin, second_admin, api_as):
    for user in (member_admin, second_admin):
        api = api_as(user)
        assert_json_error(api.get(f"/api/v1/datasets/{anchored['id']}/node/manifest/"), 403)
        response = api.get(f"/api/v1/datasets/{anchored['id']}/node/chunks/0/?version=1")
        assert_json_error(response, 403, "node")
