"""Joining the consortium end to end, through the API only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from portal.consortium.models import Member
from tests.factories import (
    TOTPDeviceFactory,
    api_client,
    totp_code,
    wallet_sign,
)

pytestmark = pytest.mark.django_db


def _apply(keys) -> int:
    fields = {
        "name": keys.name,
        "governance_address": keys.address,
        "data_public_key": keys.data_key,
        "role": 1,
    }
    typed = api_client().post("/api/v1/applications/typed-data/", fields, format="json").json()
    response = api_client().post(
        "/api/v1/applications/",
        {
            **fields,
            "contact_email": "admin@harbour.example",
            "signature": wallet_sign(keys.key, typed),
            "admin_username": "harbour-admin",
            "admin_password": "harbour-pass-123",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def _vote(client: APIClient, proposal_id: int, key: str, support: bool) -> dict:
    base = f"/api/v1/proposals/{proposal_id}/vote/"
    typed = client.post(base + "typed-data/", {"support": support}, format="json").json()
    response = client.post(
        base, {"support": support, "signature": wallet_sign(key, typed)}, format="json"
    )
    assert response.status_code == 200, response.json()
    return response.json()


def _applicant_me() -> dict:
    user = get_user_model().objects.get(username="harbour-admin")
    device = TOTPDeviceFactory(user=user)
    token = APIClient().post(
        "/api/v1/auth/token/",
        {
            "username": "harbour-admin",
            "password": "harbour-pass-123",
            "otp_token": totp_code(device),
        },
        format="json",
    )
    assert token.status_code == 200, token.json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    return client.get("/api/v1/me/").json()


def _sponsor(client: APIClient, member_id: int, key: str) -> int:
    url = f"/api/v1/applications/{member_id}/sponsor/"
    typed = client.post(url + "typed-data/").json()
    response = client.post(url, {"signature": wallet_sign(key, typed)}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def test_it_admits_an_applicant_that_two_founders_vote_for(
    consortium, applicant_keys, member_admin, second_admin
):
    member_id = _apply(applicant_keys)
    mary, city = api_client(member_admin), api_client(second_admin)
    awaiting = mary.get("/api/v1/applications/awaiting-sponsor/").json()["results"]
    assert [m["id"] for m in awaiting] == [member_id]

    proposal_id = _sponsor(mary, member_id, consortium[0].key)
    assert _applicant_me()["status"] == "proposed"
    first = _vote(mary, proposal_id, consortium[0].key, True)
    assert (first["status"], first["yes"]) == ("open", 1)
    decided = _vote(city, proposal_id, consortium[1].key, True)

    assert decided["status"] == "accepted"
    assert decided["yes"] == 2
    member = Member.objects.get(pk=member_id)
    assert member.status == Member.Status.ACTIVE
    assert member.chain_member_id is not None
    assert mary.get(f"/api/v1/members/{member_id}/").json()["status"] == "active"
    assert mary.get("/api/v1/applications/awaiting-sponsor/").json()["results"] == []
    me = _applicant_me()
    assert (me["status"], me["role"]) == ("active", "admin")
    assert me["member"]["name"] == "Harbour Hospital"


def test_it_refuses_an_applicant_that_two_founders_vote_against(
    consortium, applicant_keys, member_admin, second_admin
):
    member_id = _apply(applicant_keys)
    mary, city = api_client(member_admin), api_client(second_admin)
    proposal_id = _sponsor(mary, member_id, consortium[0].key)

    _vote(mary, proposal_id, consortium[0].key, False)
    decided = _vote(city, proposal_id, consortium[1].key, False)

    assert decided["status"] == "rejected"
    assert decided["no"] == 2
    me = _applicant_me()
    assert me["status"] == "refused"
    assert me["member"]["chain_member_id"] is None
    assert Member.objects.get(pk=member_id).status == Member.Status.REFUSED
