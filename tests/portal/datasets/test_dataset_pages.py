"""The dataset pages: the catalogue, a dataset's page and its owner's signed actions,
through Django's test client on the in-process chain.

Personas come from tests/conftest.py: `member_admin` (admin of the owner, the first
founder), `second_admin` (admin of another founder), `clinician` (staff of the owner,
not a steward), `outsider` (staff of a hospital that only applied) and anonymous.
"""

from __future__ import annotations

from typing import Any

import pytest
from datasets_api_helpers import (
    UPLOADS,
    chunk_bytes,
    create_upload,
    grant_entry,
    node_api,
    put_chunk,
    sign,
)
from django.test import Client
from django.urls import reverse

from portal.datasets.models import Dataset, Grant
from tests.factories import messages_of, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def anchored(datasets_chain, member_admin, node, package, tmp_path, api_as) -> dict[str, Any]:
    """A dataset of the first founder, anchored, with one grant to its own node."""
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    for index in range(upload["expected_chunks"]):
        stored = put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
        assert stored.status_code == 200, stored.content
    committed = api.post(f"{UPLOADS}{upload['id']}/commit/")
    assert committed.status_code == 200, committed.content
    return committed.json()["dataset"]


def _detail(dataset: dict[str, Any]) -> str:
    return reverse("dataset-detail", args=[dataset["id"]])


def test_the_catalogue_lists_the_dataset_for_every_member(anchored, clinician, second_admin):
    for client in (signed_in(clinician), signed_in(second_admin)):
        page = client.get(reverse("dataset-list"))
        assert page.status_code == 200
        html = page.content.decode()
        assert "Phantom CT" in html
        assert "St. Mary&#x27;s Hospital" in html or "St. Mary's Hospital" in html
        assert anchored["version"]["manifest_sha256"][:10] in html
        assert anchored["version"]["anchored_tx"][:10] in html
        assert _detail(anchored) in html
        assert f'href="{reverse("dataset-list")}"' in html  # the nav link
    # A clinician may not upload: no link to the upload page on the catalogue.
    assert 'class="button" href="/datasets/upload/"' not in (
        signed_in(clinician).get(reverse("dataset-list")).content.decode()
    )


def test_the_uploader_gets_a_link_to_the_upload_page(anchored, member_admin):
    html = signed_in(member_admin).get(reverse("dataset-list")).content.decode()
    assert f'class="button" href="{reverse("dataset-upload")}"' in html


def test_the_outsider_and_anonymous_are_refused(anchored, outsider):
    for url in (reverse("dataset-list"), _detail(anchored)):
        assert Client().get(url).url.startswith("/accounts/login/")
        assert signed_in(outsider).get(url).status_code == 403
    typed_url = reverse("dataset-withdraw-typed-data", args=[anchored["id"]])
    assert signed_in(outsider).post(typed_url).status_code == 404
    assert Client().post(typed_url).status_code == 302
    response = signed_in(outsider).post(_detail(anchored), {"action": "withdraw", "demo": "1"})
    assert response.status_code == 403
    assert Dataset.objects.get(pk=anchored["id"]).status == Dataset.Status.ACTIVE


def test_the_owner_sees_versions_grants_and_the_access_log(anchored, member_admin, node):
    node_api(node).get(f"/api/v1/datasets/{anchored['id']}/node/manifest/")
    page = signed_in(member_admin).get(_detail(anchored))
    assert page.status_code == 200
    html = page.content.decode()
    for section in ("dataset-versions", "dataset-grants", "dataset-access-log", "dataset-withdraw"):
        assert f'data-testid="{section}"' in html, section
    assert anchored["version"]["manifest_sha256"] in html
    assert anchored["version"]["signer_address"][:10] in html
    assert node.node_id[:10] in html
    assert html.count('data-testid="wallet-status"') == 1  # one wallet status for the page
    assert html.count('name="signer" value="demo"') == 1  # one choice of signer
    assert html.count('name="demo" value="1" disabled') == 2  # the revoke and the withdrawal
    assert page.context["access_log"][0].what == "manifest"


def test_another_members_admin_sees_the_entry_only(anchored, second_admin, node):
    client = signed_in(second_admin)
    page = client.get(_detail(anchored))
    assert page.status_code == 200
    html = page.content.decode()
    assert anchored["version"]["manifest_sha256"] in html  # the catalogue entry
    for section in ("dataset-versions", "dataset-grants", "dataset-access-log", "dataset-withdraw"):
        assert f'data-testid="{section}"' not in html, section
    assert node.node_id[:10] not in html
    assert "Withdraw" not in html and "Revoke" not in html
    # Acting anyway is refused as a message; the typed data too.
    response = client.post(_detail(anchored), {"action": "withdraw", "demo": "1"}, follow=True)
    assert any("only St. Mary's Hospital's admin" in m for m in messages_of(response))
    assert Dataset.objects.get(pk=anchored["id"]).status == Dataset.Status.ACTIVE
    typed = client.post(reverse("dataset-withdraw-typed-data", args=[anchored["id"]]))
    assert typed.status_code == 403 and "only" in typed.json()["error"]


def _withdraw(anchored: dict[str, Any], **fields: str) -> dict[str, str]:
    """The withdraw form as a person sends it: with the dataset's name typed to confirm."""
    title = Dataset.objects.get(pk=anchored["id"]).title
    return {"action": "withdraw", "confirm_title": title, **fields}


def test_the_owner_withdraws_with_the_demo_keystore_and_twice_is_a_message(anchored, member_admin):
    client = signed_in(member_admin)
    response = client.post(_detail(anchored), _withdraw(anchored, demo="1"), follow=True)
    assert response.status_code == 200
    assert any("is withdrawn" in m for m in messages_of(response))
    dataset = Dataset.objects.get(pk=anchored["id"])
    assert dataset.status == Dataset.Status.WITHDRAWN and dataset.withdrawn_tx
    html = response.content.decode()
    assert "Withdrawn" in html and dataset.withdrawn_tx in html
    assert "Withdraw dataset</button>" not in html and 'data-testid="signer"' not in html
    assert "Withdrawn" in client.get(reverse("dataset-list")).content.decode()

    again = client.post(_detail(anchored), _withdraw(anchored, demo="1"), follow=True)
    assert again.status_code == 200
    assert any("already withdrawn" in m for m in messages_of(again))


def test_the_withdraw_form_is_refused_unless_the_dataset_name_is_typed(anchored, member_admin):
    client = signed_in(member_admin)
    page = client.get(_detail(anchored)).content.decode()
    assert 'name="confirm_title"' in page and "data-confirm-name=" in page
    assert "cannot be undone" in page

    for typed in (None, "", "phantom ct", "Phantom"):
        form = _withdraw(anchored, demo="1")
        if typed is None:
            del form["confirm_title"]
        else:
            form["confirm_title"] = typed
        response = client.post(_detail(anchored), form, follow=True)

        assert any("type the dataset's name" in m for m in messages_of(response)), typed
        assert Dataset.objects.get(pk=anchored["id"]).status == Dataset.Status.ACTIVE


def test_the_owner_withdraws_with_a_wallet_signature(anchored, member_admin, consortium):
    client = signed_in(member_admin)
    answer = client.post(reverse("dataset-withdraw-typed-data", args=[anchored["id"]]))
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["signer"] == consortium[0].address
    signature = sign(consortium[0].key, body["typed"])
    response = client.post(_detail(anchored), _withdraw(anchored, signature=signature), follow=True)
    assert any("is withdrawn" in m for m in messages_of(response)), messages_of(response)
    assert Dataset.objects.get(pk=anchored["id"]).status == Dataset.Status.WITHDRAWN


def test_a_signature_by_another_key_is_refused_as_a_message(anchored, member_admin, consortium):
    client = signed_in(member_admin)
    body = client.post(reverse("dataset-withdraw-typed-data", args=[anchored["id"]])).json()
    wrong = sign(consortium[1].key, body["typed"])
    response = client.post(_detail(anchored), _withdraw(anchored, signature=wrong), follow=True)
    assert response.status_code == 200
    assert any("not by St. Mary's Hospital" in m for m in messages_of(response))
    assert Dataset.objects.get(pk=anchored["id"]).status == Dataset.Status.ACTIVE


def test_the_owner_revokes_a_grant_with_the_demo_keystore(anchored, member_admin, node):
    client = signed_in(member_admin)
    typed = client.post(
        reverse("dataset-revoke-typed-data", args=[anchored["id"]]), {"node_id": node.node_id}
    )
    assert typed.status_code == 200 and typed.json()["typed"]["primaryType"]
    form = {"action": "revoke", "node_id": node.node_id, "demo": "1"}
    response = client.post(_detail(anchored), form, follow=True)
    assert response.status_code == 200
    assert any("is revoked" in m for m in messages_of(response)), messages_of(response)
    grant = Grant.objects.get(version__dataset_id=anchored["id"], node=node)
    assert grant.state == Grant.State.REVOKED
    html = response.content.decode()
    assert "Revoked" in html and 'name="action" value="revoke"' not in html

    again = client.post(_detail(anchored), form, follow=True)
    assert any("no active grant" in m for m in messages_of(again))


def test_a_form_without_a_signature_or_demo_is_a_message(anchored, member_admin):
    client = signed_in(member_admin)
    response = client.post(_detail(anchored), _withdraw(anchored), follow=True)
    assert any("no signature was sent" in m for m in messages_of(response))
    unknown = client.post(
        _detail(anchored), {"action": "revoke", "node_id": "nonsense", "demo": "1"}, follow=True
    )
    assert unknown.status_code == 200 and messages_of(unknown)
