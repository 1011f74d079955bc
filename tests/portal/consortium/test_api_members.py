from __future__ import annotations

import pytest

from portal.consortium.models import Member
from tests.factories import api_client

pytestmark = pytest.mark.django_db


def _founder(consortium, i: int = 0) -> Member:
    return Member.objects.get(governance_address=consortium[i].address)


def test_it_lists_every_member_and_applicant_to_a_member(member_admin, applicant):
    response = api_client(member_admin).get("/api/v1/members/")

    assert response.status_code == 200
    names = {m["name"] for m in response.json()["results"]}
    assert names == {"St. Mary's Hospital", "City General", "Northside Clinic", "Harbour Hospital"}
    harbour = next(m for m in response.json()["results"] if m["name"] == "Harbour Hospital")
    assert harbour["status"] == "applied"
    assert harbour["chain_member_id"] is None


def test_it_lets_a_clinician_see_the_members(clinician, consortium):
    response = api_client(clinician).get("/api/v1/members/")

    assert response.status_code == 200
    assert len(response.json()["results"]) == 3


def test_it_lists_only_its_own_member_to_the_outsider(outsider, applicant):
    response = api_client(outsider).get("/api/v1/members/")

    assert response.status_code == 200
    assert [m["id"] for m in response.json()["results"]] == [applicant.pk]


def test_it_refuses_the_member_list_to_anonymous(consortium):
    response = api_client().get("/api/v1/members/")

    assert response.status_code == 401
    assert "credentials" in response.json()["error"]


def test_it_shows_a_member_to_a_member(member_admin, consortium):
    city = _founder(consortium, 1)

    response = api_client(member_admin).get(f"/api/v1/members/{city.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "City General"
    assert body["status"] == "active"
    assert body["governance_address"] == consortium[1].address
    assert body["role"] == 1
    assert body["founding"] is True


def test_it_hides_other_members_from_the_outsider(outsider, consortium):
    city = _founder(consortium, 1)

    response = api_client(outsider).get(f"/api/v1/members/{city.pk}/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert response.json()["error"]


def test_it_shows_the_outsider_its_own_member(outsider, applicant):
    response = api_client(outsider).get(f"/api/v1/members/{applicant.pk}/")

    assert response.status_code == 200
    assert response.json()["status"] == "applied"


def test_it_answers_an_unknown_member_with_a_json_404(member_admin):
    response = api_client(member_admin).get("/api/v1/members/999999/")

    assert response.status_code == 404
    assert response.json()["error"]


def test_it_refuses_a_member_to_anonymous(consortium):
    city = _founder(consortium, 1)

    response = api_client().get(f"/api/v1/members/{city.pk}/")

    assert response.status_code == 401
