"""The API for proposing a member's removal or a new governance address."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account

from portal.consortium import services
from portal.consortium.models import Member, Proposal
from tests.factories import api_client, wallet_sign

pytestmark = pytest.mark.django_db

NEW_ADDRESS = Account.from_key((0x4100).to_bytes(32, "big")).address


def _founder(consortium: Any, i: int) -> Member:
    return Member.objects.get(governance_address=consortium[i].address)


def _url(member: Member, action: str) -> str:
    return f"/api/v1/members/{member.pk}/{action}"


ROUTES = ["removal/typed-data/", "removal/", "rotation/typed-data/", "rotation/"]


@pytest.fixture
def northside(consortium) -> Member:
    return _founder(consortium, 2)


def test_it_opens_a_removal_signed_by_the_wallet(member_admin, consortium, northside):
    client = api_client(member_admin)
    typed = client.post(_url(northside, "removal/typed-data/")).json()
    assert typed["primaryType"] == "ProposeRemoval"
    assert typed["message"]["memberId"] == northside.chain_member_id

    response = client.post(
        _url(northside, "removal/"),
        {"signature": wallet_sign(consortium[0].key, typed)},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "removal"
    assert body["subject"]["name"] == "Northside Clinic"
    assert body["sponsor"]["name"] == "St. Mary's Hospital"
    assert body["status"] == "open"


def test_it_opens_a_rotation_with_the_demo_keystore_and_the_vote_moves_the_address(
    member_admin, consortium, northside
):
    response = api_client(member_admin).post(
        _url(northside, "rotation/"),
        {"new_governance": NEW_ADDRESS, "demo_keystore": True},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "rotation"
    assert body["new_governance_address"] == NEW_ADDRESS
    proposal = Proposal.objects.get(chain_proposal_id=body["id"])
    for i in (0, 1):
        proposal = services.vote_cast(
            voter=_founder(consortium, i), proposal=proposal, support=True
        )
    northside.refresh_from_db()
    assert northside.governance_address == NEW_ADDRESS


def test_it_gives_the_rotation_typed_data(member_admin, northside):
    response = api_client(member_admin).post(
        _url(northside, "rotation/typed-data/"), {"new_governance": NEW_ADDRESS.lower()}
    )

    assert response.status_code == 200
    assert response.json()["primaryType"] == "ProposeRotation"
    assert response.json()["message"]["newGovernance"] == NEW_ADDRESS


def test_it_refuses_a_second_removal_while_one_is_pending(member_admin, consortium, northside):
    services.removal_propose(proposer=_founder(consortium, 1), member=northside)

    response = api_client(member_admin).post(
        _url(northside, "removal/"), {"demo_keystore": True}, format="json"
    )

    assert response.status_code == 400
    assert "Northside Clinic already has a removal proposal open" in response.json()["error"]


def test_it_refuses_a_rotation_to_an_address_in_use(member_admin, consortium, northside):
    response = api_client(member_admin).post(
        _url(northside, "rotation/"),
        {"new_governance": consortium[0].address, "demo_keystore": True},
        format="json",
    )

    assert response.status_code == 400
    assert "already the governance address of St. Mary's Hospital" in response.json()["error"]


def test_it_requires_the_new_address(member_admin, northside):
    response = api_client(member_admin).post(_url(northside, "rotation/"), {}, format="json")

    assert response.status_code == 400
    assert response.json()["error"] == "new_governance: This field is required."


def test_it_refuses_a_clinician(clinician, consortium, northside):
    client = api_client(clinician)
    for action in ROUTES:
        response = client.post(_url(northside, action), {"new_governance": NEW_ADDRESS})
        assert response.status_code == 403, action
        assert "only the admin of St. Mary's Hospital may" in response.json()["error"]
    assert not Proposal.objects.exists()


def test_it_refuses_the_outsider_every_route(outsider, consortium, northside):
    client = api_client(outsider)
    own = outsider.staff.member
    for action in ROUTES:
        other = client.post(_url(northside, action), {"new_governance": NEW_ADDRESS})
        assert other.status_code == 404, action
        mine = client.post(_url(own, action), {"new_governance": NEW_ADDRESS})
        assert mine.status_code == 403, action
        assert "only active hospital members may" in mine.json()["error"]
    assert not Proposal.objects.exists()


def test_it_refuses_anonymous_callers(consortium, northside):
    for action in ROUTES:
        assert api_client().post(_url(northside, action)).status_code == 401
