"""On a demo portal the demo keystore signs only when a request asks for it.

A data steward's token that POSTs an empty body to withdraw a dataset or revoke a grant
(what a schema-driven fuzzer does) is refused, and nothing changes on chain or in the
database.
"""

from __future__ import annotations

from typing import Any

import pytest
from datasets_api_helpers import UPLOADS, chunk_bytes, create_upload, grant_entry, put_chunk
from rest_framework.test import APIClient

from portal.core.tokens import api_token_issue
from portal.datasets.models import Dataset, Grant

pytestmark = pytest.mark.django_db

EMPTY_BODIES = [
    pytest.param(None, id="no-body"),
    pytest.param({}, id="empty-json"),
    pytest.param({"signature": ""}, id="blank-signature"),
    pytest.param({"demo_keystore": False}, id="demo-keystore-false"),
]


@pytest.fixture
def steward(mary):
    from portal.consortium import services
    from portal.consortium.models import Staff

    return services.staff_create(
        member=mary,
        username="mary-steward",
        password="mary-pass-123",
        email="data@mary.example",
        role=Staff.Role.STEWARD,
    ).user


@pytest.fixture
def anchored(datasets_chain, member_admin, node, package, tmp_path, api_as) -> dict[str, Any]:
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    for index in range(upload["expected_chunks"]):
        put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
    response = api.post(f"{UPLOADS}{upload['id']}/commit/")
    assert response.status_code == 200, response.content
    return response.json()["dataset"]


def _token_client(user) -> APIClient:
    _, key = api_token_issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def _post(client: APIClient, url: str, body: dict[str, Any] | None):
    if body is None:
        return client.post(url)
    return client.post(url, body, format="json")


def _assert_signature_required(response) -> None:
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "signature_required"
    assert "demo_keystore: true" in response.json()["error"]


@pytest.mark.parametrize("body", EMPTY_BODIES)
def test_it_refuses_a_stewards_withdrawal_without_a_signature(
    anchored, steward, datasets_chain, body
):
    url = f"/api/v1/datasets/{anchored['id']}/withdraw/"

    _assert_signature_required(_post(_token_client(steward), url, body))

    assert Dataset.objects.get(pk=anchored["id"]).status == Dataset.Status.ACTIVE
    assert not datasets_chain.dataset(anchored["chain_id"]).withdrawn


@pytest.mark.parametrize("body", EMPTY_BODIES)
def test_it_refuses_a_stewards_revocation_without_a_signature(
    anchored, steward, node, datasets_chain, body
):
    url = f"/api/v1/datasets/{anchored['id']}/grants/{node.node_id}/revoke/"

    _assert_signature_required(_post(_token_client(steward), url, body))

    assert Grant.objects.get(node=node).state == Grant.State.ACTIVE
    assert datasets_chain.grant_of(anchored["chain_id"], node.node_id).active


def test_it_withdraws_when_the_steward_asks_for_the_demo_keystore(
    anchored, steward, datasets_chain
):
    url = f"/api/v1/datasets/{anchored['id']}/withdraw/"

    response = _token_client(steward).post(url, {"demo_keystore": True}, format="json")

    assert response.status_code == 200, response.content
    assert datasets_chain.dataset(anchored["chain_id"]).withdrawn
    again = _token_client(steward).post(f"{url}typed-data/", {}, format="json")
    assert again.status_code == 400  # documented in the schema (schemathesis's find)
    assert "already withdrawn" in again.json()["error"]


def test_it_refuses_the_demo_keystore_on_a_portal_without_demo_keystores(
    anchored, steward, datasets_chain, settings
):
    settings.DEMO_KEYSTORES = False
    url = f"/api/v1/datasets/{anchored['id']}/withdraw/"

    response = _token_client(steward).post(url, {"demo_keystore": True}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "demo_keystores_disabled"
    assert not datasets_chain.dataset(anchored["chain_id"]).withdrawn


def test_it_refuses_an_upload_whose_grant_has_no_signature(
    datasets_chain, member_admin, node, package, api_as, consortium
):
    from datasets_api_helpers import TYPED, sign

    api = api_as(member_admin)
    typed = api.post(
        TYPED,
        {"dataset_id": package.dataset_id, "manifest_sha256": "0x" + package.manifest_sha256},
        format="json",
    ).json()
    manifest_signature = sign(consortium[0].key, typed["manifest"])

    response = create_upload(
        api,
        package,
        [grant_entry(package, node)],
        signature=manifest_signature,
        demo_keystore=False,
    )

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "signature_required"
    assert response.json()["error"].startswith(f"grant to {node.node_id}: a signature is required")
    assert not Dataset.objects.exists()
