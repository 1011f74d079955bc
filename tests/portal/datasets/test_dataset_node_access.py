from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from datasets_api_helpers import (
    UPLOADS,
    assert_json_error,
    chunk_bytes,
    create_upload,
    grant_entry,
    node_side,
    pinned_record,
    put_chunk,
    token_for,
)
from rest_framework.test import APIClient

from portal.datasets.models import AccessLog
from portal.nodes.agent.client import PortalError
from portal.nodes.agent.fetch import DatasetClient, DatasetRefused, fetch_and_verify
from training.ingest.annotations import parse_annotations

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
    anchored, node, node_keys, package, phantoms, tmp_path, chain_client, member_admin, api_as
):
    side = node_side(node, node_keys)
    result = fetch_and_verify(
        client=side.client,
        keystore=side.keystore,
        cache_dir=tmp_path / "cache",
        dataset_id=anchored["id"],
        chain=chain_client,
        record=pinned_record(chain_client),
    )
    assert result.version == 1 and result.instances == 20 and result.anchor_checked_on_chain
    files = sorted(p.name for p in (result.folder / "instances").iterdir())
    assert len(files) == 20 and all(name.endswith(".dcm") for name in files)
    annotations = (result.folder / "annotations.json").read_bytes()
    sizes = {name.removesuffix(".dcm"): (256, 256) for name in files}
    decrypted = parse_annotations(annotations, sizes).instances.values()
    source = json.loads(phantoms[1].read_bytes())["instances"].values()
    assert sum(len(b) for b in decrypted) == package.boxes == sum(len(e["boxes"]) for e in source)
    assert package.boxes > 0
    assert not (tmp_path / "cache" / anchored["id"] / "v1.ciphertext").exists()

    releases = _log(anchored["id"], "release")
    assert sorted(e.what for e in releases) == ["chunk", "chunk", "chunk", "manifest"]
    assert all(e.node_id == node.pk for e in releases)
    assert [e.detail for e in _log(anchored["id"], "decrypt")] == [
        "20 instances verified and decrypted"
    ]
    # The owner sees the log; no other member does.
    page = api_as(member_admin).get(f"/api/v1/datasets/{anchored['id']}/access-log/").json()
    assert page["count"] == 5 and page["next"] is None
    log = page["results"]
    assert {e["action"] for e in log} == {"release", "decrypt"}
    assert [e["self_reported"] for e in log if e["action"] == "decrypt"] == [True]
    assert not any(e["self_reported"] for e in log if e["action"] == "release")
    assert all(e["node_id"] == node.node_id for e in log)


def test_it_refuses_and_logs_a_node_without_a_grant(
    anchored, other_node, other_node_keys, tmp_path, chain_client
):
    side = node_side(other_node, other_node_keys)
    with pytest.raises(PortalError) as refused:
        fetch_and_verify(
            client=side.client,
            keystore=side.keystore,
            cache_dir=tmp_path / "cache",
            dataset_id=anchored["id"],
            chain=chain_client,
            record=pinned_record(chain_client),
        )
    assert refused.value.status == 403 and "no active grant" in refused.value.message
    with pytest.raises(PortalError):
        side.client.dataset_chunk(anchored["id"], 1, 0)
    refusals = _log(anchored["id"], "refuse")
    assert [e.what for e in refusals] == ["chunk", "manifest"]
    assert all(e.node_id == other_node.pk for e in refusals)
    assert not _log(anchored["id"], "release")


def test_it_refuses_the_dataset_when_a_chunk_was_tampered_with(
    anchored, node, node_keys, tmp_path, chain_client
):
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
            chain=chain_client,
            record=pinned_record(chain_client),
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
    catalogue = api_as(second_admin).get("/api/v1/datasets/").json()["results"]
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
    grants = owner.get(f"/api/v1/datasets/{anchored['id']}/grants/").json()["results"]
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
        record=pinned_record(chain_client),
    )
    assert result.instances == 20


def test_a_person_cannot_use_the_node_routes(anchored, member_admin, second_admin, api_as):
    for user in (member_admin, second_admin):
        api = api_as(user)
        assert_json_error(api.get(f"/api/v1/datasets/{anchored['id']}/node/manifest/"), 403)
        response = api.get(f"/api/v1/datasets/{anchored['id']}/node/chunks/0/?version=1")
        assert_json_error(response, 403, "node")


class CompromisedPortal(DatasetClient):
    """The node's REST client talking to a portal that rewrites its manifest answer."""

    def __init__(self, honest: DatasetClient, rewrite: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(honest.base_url, "unused: the honest session carries the token")
        self.session = honest.session
        self.rewrite = rewrite

    def dataset_manifest(self, dataset_id: str, version: int | None = None) -> dict[str, Any]:
        info = super().dataset_manifest(dataset_id, version)
        self.rewrite(info)
        return info


def _fetch_through(portal: DatasetClient, keys, anchored, tmp_path, chain_client) -> None:
    fetch_and_verify(
        client=portal,
        keystore=keys,
        cache_dir=tmp_path / "cache",
        dataset_id=anchored["id"],
        chain=chain_client,
        record=pinned_record(chain_client),
    )


def test_a_node_refuses_a_registry_address_the_portal_hands_it(
    anchored, node, node_keys, tmp_path, chain_client, consortium
):
    """The portal points the node at a DatasetRegistry of its own, to anchor what it likes."""
    from chain.dataset_registry import DatasetRegistry
    from portal.core import chain as portal_chain

    rogue = DatasetRegistry.deploy(chain_client, registry_address=portal_chain.deployment().address)

    def point_at_rogue(info: dict[str, Any]) -> None:
        info["anchor"]["contract"] = rogue.address

    side = node_side(node, node_keys)
    portal = CompromisedPortal(side.client, point_at_rogue)
    with pytest.raises(DatasetRefused, match=f"names DatasetRegistry {rogue.address}"):
        _fetch_through(portal, side.keystore, anchored, tmp_path, chain_client)
    assert not (tmp_path / "cache" / anchored["id"] / "v1").exists()


@pytest.mark.parametrize("claim", ["owner only", "owner and chain id"])
def test_a_node_refuses_an_owner_the_portal_makes_up(
    anchored, node, node_keys, tmp_path, chain_client, consortium, claim
):
    """The portal says City General owns St. Mary's dataset (its name on the node's page)."""
    from chain.dataset_registry import dataset_id_of, dataset_id_parts
    from portal.consortium.models import Member

    city = Member.objects.get(governance_address=consortium[1].address)

    def claim_city(info: dict[str, Any]) -> None:
        info["owner"] = {
            "id": city.pk,
            "name": city.name,
            "governance_address": city.governance_address,
            "chain_member_id": city.chain_member_id,
        }
        if claim == "owner and chain id":
            uuid = dataset_id_parts(info["chain_dataset_id"])[1]
            info["chain_dataset_id"] = "0x" + dataset_id_of(city.chain_member_id, uuid).hex()

    side = node_side(node, node_keys)
    portal = CompromisedPortal(side.client, claim_city)
    expected = "belongs to member 1" if claim == "owner only" else "manifest signature is by"
    with pytest.raises(DatasetRefused, match=expected):
        _fetch_through(portal, side.keystore, anchored, tmp_path, chain_client)
    reports = [e for e in _log(anchored["id"], "refuse") if e.what == "dataset"]
    assert len(reports) == 1


def test_a_node_cannot_flood_the_access_log_with_reports(
    anchored, node, member_admin, api_as, settings
):
    """A granted node posts "decrypted" reports in a loop, to push real entries out of view."""
    settings.DATASET_NODE_REPORTS_PER_HOUR = 3
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(node)}")
    reports = f"/api/v1/datasets/{anchored['id']}/node/reports/"
    fake = {"version": 1, "outcome": "ok", "reason": "decrypted (trust me)"}
    answers = [api.post(reports, fake, format="json") for _ in range(5)]
    assert [a.status_code for a in answers[:3]] == [201, 201, 201]
    for answer in answers[3:]:
        body = assert_json_error(answer, 429, "DATASET_NODE_REPORTS_PER_HOUR=3")
        assert body["code"] == "throttled"
    assert len(_log(anchored["id"], "decrypt")) == 3

    # The owner's page says whose word each report is.
    from tests.factories import signed_in

    page = signed_in(member_admin).get(f"/datasets/{anchored['id']}/")
    assert page.content.decode().count("self-reported</span>") == 3


def test_the_access_log_api_pages_instead_of_truncating(anchored, node, member_admin, api_as):
    from portal.datasets.models import Dataset

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(node)}")
    assert api.get(f"/api/v1/datasets/{anchored['id']}/node/chunks/0/?version=1").status_code == 200
    dataset = Dataset.objects.get(pk=anchored["id"])
    [first] = AccessLog.objects.filter(dataset=dataset)  # the real release
    AccessLog.objects.bulk_create(
        AccessLog(dataset=dataset, node=node, action="decrypt", what="dataset", detail=f"#{i}")
        for i in range(1200)
    )
    base = f"/api/v1/datasets/{anchored['id']}/access-log/"
    api = api_as(member_admin)
    page = api.get(base).json()
    assert page["count"] == 1201 and len(page["results"]) == 100 and page["next"]
    assert len(api.get(base, {"page_size": 5000}).json()["results"]) == 1000  # the most
    last = api.get(base, {"page_size": 1000, "page": 2}).json()
    assert last["next"] is None and len(last["results"]) == 201
    # The oldest, real entry is still there, after every fake one.
    assert last["results"][-1]["what"] == "chunk" == first.what
    assert not last["results"][-1]["self_reported"]


def test_a_chunk_is_refused_once_the_chain_revokes_the_grant_before_the_portal_mirrors_it(
    anchored, node, consortium, datasets_chain, settings
):
    """The owner revokes on chain directly; the portal's mirror still says "active"."""
    from portal.datasets.models import Grant

    settings.DATASET_GRANT_CHECK_SECONDS = 0  # read the chain on every chunk
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(node)}")
    chunk = f"/api/v1/datasets/{anchored['id']}/node/chunks/0/?version=1"
    assert api.get(chunk).status_code == 200
    datasets_chain.revoke_grant(
        dataset_id=anchored["chain_id"], node_id=node.node_id, sender_key=consortium[0].key
    )
    assert Grant.objects.get(node=node).state == "active"  # not mirrored yet
    assert_json_error(api.get(chunk), 403, "the chain does not hold this grant")
    assert [e.what for e in _log(anchored["id"], "refuse")] == ["chunk"]
