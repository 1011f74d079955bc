from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from eth_account import Account

from portal.consortium import services
from portal.consortium.models import Member, Proposal, Staff
from tests.conftest import sign_application
from tests.factories import (
    api_client,
    other_applicant,
    wallet_sign,
)

pytestmark = pytest.mark.django_db

TYPED = "/api/v1/applications/typed-data/"
SUBMIT = "/api/v1/applications/"
AWAITING = "/api/v1/applications/awaiting-sponsor/"


def _fields(keys) -> dict[str, object]:
    return {
        "name": keys.name,
        "governance_address": keys.address,
        "data_public_key": keys.data_key,
        "role": 1,
    }


def _submission(keys, signature: str) -> dict[str, object]:
    return {
        **_fields(keys),
        "contact_email": "admin@harbour.example",
        "signature": signature,
        "admin_username": "harbour-admin",
        "admin_password": "harbour-pass-123",
    }


def _sponsor_url(member: Member, typed: bool = False) -> str:
    return f"/api/v1/applications/{member.pk}/sponsor/{'typed-data/' if typed else ''}"


def test_it_gives_anyone_the_application_to_sign(consortium, applicant_keys):
    response = api_client().post(TYPED, _fields(applicant_keys), format="json")

    assert response.status_code == 200
    typed = response.json()
    assert set(typed) == {"types", "primaryType", "domain", "message"}
    assert typed["domain"]["chainId"] == services.portal_chain.client().chain_id
    assert typed["domain"]["verifyingContract"] == services.portal_chain.deployment().address
    assert typed["message"]["applicant"] == applicant_keys.address


def test_it_refuses_typed_data_for_a_bad_address(consortium, applicant_keys):
    body = {**_fields(applicant_keys), "governance_address": "0x1234"}

    response = api_client().post(TYPED, body, format="json")

    assert response.status_code == 400
    assert "must be an Ethereum address" in response.json()["error"]


def test_it_takes_an_application_signed_in_a_wallet(consortium, applicant_keys):
    typed = api_client().post(TYPED, _fields(applicant_keys), format="json").json()
    signature = wallet_sign(applicant_keys.key, typed)

    response = api_client().post(SUBMIT, _submission(applicant_keys, signature), format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "applied"
    member = Member.objects.get(governance_address=applicant_keys.address)
    staff = Staff.objects.get(member=member)
    assert staff.role == Staff.Role.ADMIN
    assert staff.user.check_password("harbour-pass-123")


def test_it_refuses_an_application_with_a_bad_data_key(consortium, applicant_keys):
    body = _submission(applicant_keys, sign_application(applicant_keys))
    body["data_public_key"] = "0xabcd"

    response = api_client().post(SUBMIT, body, format="json")

    assert response.status_code == 400
    assert "data_public_key: must be an X25519 public key" in response.json()["error"]
    assert not Member.objects.filter(governance_address=applicant_keys.address).exists()


def test_it_refuses_an_application_with_a_bad_address(consortium, applicant_keys):
    body = _submission(applicant_keys, sign_application(applicant_keys))
    body["governance_address"] = "harbour"

    response = api_client().post(SUBMIT, body, format="json")

    assert response.status_code == 400
    assert "must be an Ethereum address" in response.json()["error"]


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        ("0xnothex", "signature: must be 65 bytes"),
        ("0x" + "12" * 10, "signature: must be 65 bytes"),
    ],
)
def test_it_refuses_a_malformed_signature(consortium, applicant_keys, signature, message):
    response = api_client().post(SUBMIT, _submission(applicant_keys, signature), format="json")

    assert response.status_code == 400
    assert message in response.json()["error"]


def test_it_refuses_a_signature_that_recovers_to_no_one(consortium, applicant_keys):
    body = _submission(applicant_keys, "0x" + "00" * 64 + "1b")

    response = api_client().post(SUBMIT, body, format="json")

    assert response.status_code == 400
    assert "not a valid secp256k1 signature" in response.json()["error"]


def test_it_refuses_an_application_signed_by_someone_else(consortium, applicant_keys):
    typed = api_client().post(TYPED, _fields(applicant_keys), format="json").json()
    stranger = Account.create()
    signature = wallet_sign(stranger.key.hex(), typed)

    response = api_client().post(SUBMIT, _submission(applicant_keys, signature), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert f"signed by {stranger.address}" in error
    assert applicant_keys.address in error


def test_it_refuses_a_signature_over_other_fields(consortium, applicant_keys):
    body = _submission(applicant_keys, sign_application(applicant_keys))
    body["name"] = "Another Name"

    response = api_client().post(SUBMIT, body, format="json")

    assert response.status_code == 400
    assert "not by the applicant address" in response.json()["error"]


def test_it_refuses_a_second_application_from_the_same_address(applicant, applicant_keys):
    body = _submission(applicant_keys, sign_application(applicant_keys))
    body["admin_username"] = "someone-else"

    response = api_client().post(SUBMIT, body, format="json")

    assert response.status_code == 400
    assert "has already applied" in response.json()["error"]


def test_it_refuses_a_weak_admin_password(consortium, applicant_keys):
    body = _submission(applicant_keys, sign_application(applicant_keys))
    body["admin_password"] = "pass"

    response = api_client().post(SUBMIT, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("admin_password:")


def test_it_refuses_a_taken_admin_username(consortium, applicant_keys, member_admin):
    body = _submission(applicant_keys, sign_application(applicant_keys))
    body["admin_username"] = "mary-admin"

    response = api_client().post(SUBMIT, body, format="json")

    assert response.status_code == 400
    assert "the username 'mary-admin' is taken" in response.json()["error"]
    assert not Member.objects.filter(governance_address=applicant_keys.address).exists()


def test_it_lists_applications_awaiting_a_sponsor_to_a_member(member_admin, applicant):
    response = api_client(member_admin).get(AWAITING)

    assert response.status_code == 200
    assert [m["name"] for m in response.json()["results"]] == ["Harbour Hospital"]


def test_it_lists_only_its_own_application_to_the_outsider(outsider, applicant):
    other_applicant(1, "Lakeside Hospital", "lakeside-admin")

    response = api_client(outsider).get(AWAITING)

    assert [m["name"] for m in response.json()["results"]] == ["Harbour Hospital"]


def test_it_refuses_the_awaiting_list_to_anonymous(applicant):
    assert api_client().get(AWAITING).status_code == 401


def test_it_gives_a_member_admin_the_sponsorship_to_sign(member_admin, applicant, consortium):
    response = api_client(member_admin).post(_sponsor_url(applicant, typed=True))

    assert response.status_code == 200
    typed = response.json()
    assert typed["message"]["applicant"] == applicant.governance_address
    assert typed["domain"]["verifyingContract"] == services.portal_chain.deployment().address


def test_it_relays_a_sponsorship_signed_in_a_wallet(member_admin, applicant, consortium):
    client = api_client(member_admin)
    typed = client.post(_sponsor_url(applicant, typed=True)).json()

    response = client.post(
        _sponsor_url(applicant),
        {"signature": wallet_sign(consortium[0].key, typed)},
        format="json",
    )

    assert response.status_code == 201, response.json()
    proposal = response.json()
    assert proposal["kind"] == "admission"
    assert proposal["status"] == "open"
    assert proposal["subject"]["name"] == "Harbour Hospital"
    assert proposal["sponsor"]["name"] == "St. Mary's Hospital"
    assert proposal["eligible"] == 3
    applicant.refresh_from_db()
    assert applicant.status == Member.Status.PROPOSED


def test_it_signs_a_sponsorship_with_the_demo_keystore(member_admin, applicant):
    response = api_client(member_admin).post(
        _sponsor_url(applicant), {"demo_keystore": True}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert Proposal.objects.filter(subject=applicant, status=Proposal.Status.OPEN).exists()


def test_it_refuses_a_sponsorship_signed_by_someone_else(member_admin, applicant, consortium):
    client = api_client(member_admin)
    typed = client.post(_sponsor_url(applicant, typed=True)).json()

    response = client.post(
        _sponsor_url(applicant),
        {"signature": wallet_sign(consortium[1].key, typed)},
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert f"the signature is by {consortium[1].address}" in error
    assert "St. Mary's Hospital's governance address" in error
    assert not Proposal.objects.exists()


def test_it_refuses_to_sponsor_twice(member_admin, second_admin, applicant):
    demo = {"demo_keystore": True}
    assert api_client(member_admin).post(_sponsor_url(applicant), demo).status_code == 201

    response = api_client(second_admin).post(_sponsor_url(applicant), demo)

    assert response.status_code == 400
    assert "cannot be sponsored now (Proposed, members voting)" in response.json()["error"]
    assert Proposal.objects.count() == 1


def test_it_asks_for_a_wallet_signature_without_demo_keystores(member_admin, applicant, settings):
    settings.DEMO_KEYSTORES = False

    response = api_client(member_admin).post(_sponsor_url(applicant))

    assert response.status_code == 400
    assert response.json()["code"] == "signature_required"
    assert "demo" not in response.json()["error"]


def test_it_refuses_to_sign_with_the_demo_keystore_unasked(member_admin, applicant):
    response = api_client(member_admin).post(_sponsor_url(applicant), {}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "signature_required"
    assert "demo_keystore: true" in response.json()["error"]
    assert not Proposal.objects.exists()


def test_it_refuses_the_demo_keystore_where_demo_keystores_are_off(
    member_admin, applicant, settings
):
    settings.DEMO_KEYSTORES = False

    response = api_client(member_admin).post(
        _sponsor_url(applicant), {"demo_keystore": True}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "demo_keystores_disabled"
    assert not Proposal.objects.exists()


def test_it_refuses_a_clinician_to_sponsor(clinician, applicant):
    for url in (_sponsor_url(applicant, typed=True), _sponsor_url(applicant)):
        response = api_client(clinician).post(url)

        assert response.status_code == 403
        assert "you are its clinician" in response.json()["error"]
    assert not Proposal.objects.exists()


def test_it_refuses_the_outsider_to_sponsor_itself(outsider, applicant):
    response = api_client(outsider).post(_sponsor_url(applicant))

    assert response.status_code == 403
    assert "only active hospital members may sponsor" in response.json()["error"]


def test_it_hides_other_applications_from_the_outsider(outsider, applicant):
    lakeside = other_applicant(1, "Lakeside Hospital", "lakeside-admin")

    for url in (_sponsor_url(lakeside, typed=True), _sponsor_url(lakeside)):
        assert api_client(outsider).post(url).status_code == 404
    assert not Proposal.objects.exists()


def test_it_refuses_anonymous_to_sponsor(applicant):
    assert api_client().post(_sponsor_url(applicant)).status_code == 401
    assert api_client().post(_sponsor_url(applicant, typed=True)).status_code == 401


def test_it_creates_no_user_for_a_refused_application(consortium, applicant_keys):
    body = _submission(applicant_keys, "0x" + "12" * 65)

    assert api_client().post(SUBMIT, body, format="json").status_code == 400

    assert not get_user_model().objects.filter(username="harbour-admin").exists()
