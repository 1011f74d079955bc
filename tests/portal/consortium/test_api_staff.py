from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.consortium.models import Invitation, Staff
from tests.factories import (
    InvitationFactory,
    api_client,
)

pytestmark = pytest.mark.django_db

ACCEPT = "/api/v1/invitations/accept/"


def _staff(user) -> Staff:
    return Staff.objects.get(user=user)


def test_it_lists_the_members_own_staff(member_admin, clinician, second_admin):
    response = api_client(member_admin).get("/api/v1/staff/")

    assert response.status_code == 200
    assert {(s["username"], s["role"]) for s in response.json()["results"]} == {
        ("mary-admin", "admin"),
        ("mary-clinician", "clinician"),
    }


def test_it_lists_only_the_outsiders_own_staff(outsider, member_admin):
    response = api_client(outsider).get("/api/v1/staff/")

    assert [s["username"] for s in response.json()["results"]] == ["harbour-admin"]


def test_it_refuses_the_staff_list_to_anonymous(consortium):
    assert api_client().get("/api/v1/staff/").status_code == 401


def test_it_lets_an_admin_invite_staff(member_admin):
    response = api_client(member_admin).post(
        "/api/v1/invitations/", {"email": "steward@mary.example", "role": "steward"}
    )

    assert response.status_code == 201
    body = response.json()
    assert body["member"]["name"] == "St. Mary's Hospital"
    assert body["role"] == "steward"
    assert Invitation.objects.get(token=body["token"]).invited_by == member_admin


def test_it_refuses_a_clinician_to_invite(clinician):
    response = api_client(clinician).post(
        "/api/v1/invitations/", {"email": "x@mary.example", "role": "clinician"}
    )

    assert response.status_code == 403
    assert "only the member's admin may invite staff" in response.json()["error"]
    assert not Invitation.objects.exists()


def test_it_refuses_an_applicants_admin_to_invite(outsider):
    response = api_client(outsider).post(
        "/api/v1/invitations/", {"email": "x@harbour.example", "role": "admin"}
    )

    assert response.status_code == 403
    assert "not an active consortium member" in response.json()["error"]
    assert not Invitation.objects.exists()


def test_it_refuses_an_unknown_role(member_admin):
    response = api_client(member_admin).post(
        "/api/v1/invitations/", {"email": "x@mary.example", "role": "surgeon"}
    )

    assert response.status_code == 400
    assert response.json()["error"] == 'role: "surgeon" is not a valid choice.'


def test_it_refuses_a_bad_email(member_admin):
    response = api_client(member_admin).post(
        "/api/v1/invitations/", {"email": "not-an-email", "role": "clinician"}
    )

    assert response.status_code == 400
    assert response.json()["error"].startswith("email:")


def test_it_refuses_anonymous_to_invite(consortium):
    response = api_client().post("/api/v1/invitations/", {"email": "a@b.org", "role": "admin"})

    assert response.status_code == 401


def test_it_lists_the_admins_invitations(member_admin, second_admin):
    mine = InvitationFactory(member=_staff(member_admin).member)
    InvitationFactory(member=_staff(second_admin).member)

    response = api_client(member_admin).get("/api/v1/invitations/sent/")

    assert response.status_code == 200
    assert [i["id"] for i in response.json()["results"]] == [mine.pk]


def test_it_refuses_a_clinician_the_invitations(clinician):
    assert api_client(clinician).get("/api/v1/invitations/sent/").status_code == 403


def test_it_lets_an_invitee_accept_without_an_account(member_admin):
    invitation = InvitationFactory(member=_staff(member_admin).member, role="clinician")

    response = api_client().post(
        ACCEPT, {"token": invitation.token, "username": "new-doc", "password": "doc-pass-123"}
    )

    assert response.status_code == 201, response.json()
    assert response.json()["member"]["name"] == "St. Mary's Hospital"
    assert response.json()["role"] == "clinician"
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None


def test_it_refuses_an_unknown_token(consortium):
    response = api_client().post(
        ACCEPT, {"token": "nope", "username": "new-doc", "password": "doc-pass-123"}
    )

    assert response.status_code == 400
    assert "unknown, used or expired: ask for a new one" in response.json()["error"]


def test_it_refuses_an_invitation_used_twice(member_admin):
    invitation = InvitationFactory(member=_staff(member_admin).member)
    body = {"token": invitation.token, "username": "new-doc", "password": "doc-pass-123"}
    assert api_client().post(ACCEPT, body).status_code == 201

    response = api_client().post(ACCEPT, {**body, "username": "another-doc"})

    assert response.status_code == 400
    assert "unknown, used or expired" in response.json()["error"]


def test_it_refuses_an_expired_invitation(member_admin):
    invitation = InvitationFactory(
        member=_staff(member_admin).member, expires_at=timezone.now() - timedelta(minutes=1)
    )

    response = api_client().post(
        ACCEPT, {"token": invitation.token, "username": "new-doc", "password": "doc-pass-123"}
    )

    assert response.status_code == 400
    assert "expired" in response.json()["error"]


def test_it_refuses_a_weak_password_on_accepting(member_admin):
    invitation = InvitationFactory(member=_staff(member_admin).member)

    response = api_client().post(
        ACCEPT, {"token": invitation.token, "username": "new-doc", "password": "123"}
    )

    assert response.status_code == 400
    assert response.json()["error"].startswith("password:")
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


def test_it_lets_an_admin_remove_staff(member_admin, clinician):
    response = api_client(member_admin).delete(f"/api/v1/staff/{_staff(clinician).pk}/")

    assert response.status_code == 204
    assert not Staff.objects.filter(user=clinician).exists()
    clinician.refresh_from_db()
    assert clinician.is_active is False


def test_it_refuses_an_admin_removing_themself(member_admin):
    response = api_client(member_admin).delete(f"/api/v1/staff/{_staff(member_admin).pk}/")

    assert response.status_code == 400
    assert "cannot remove themself" in response.json()["error"]


def test_it_refuses_a_clinician_to_remove_staff(member_admin, clinician):
    response = api_client(clinician).delete(f"/api/v1/staff/{_staff(member_admin).pk}/")

    assert response.status_code == 403
    assert Staff.objects.filter(user=member_admin).exists()


def test_it_hides_other_members_staff_from_the_outsider(outsider, clinician):
    response = api_client(outsider).delete(f"/api/v1/staff/{_staff(clinician).pk}/")

    assert response.status_code == 404
    assert Staff.objects.filter(user=clinician).exists()


def test_it_hides_other_members_staff_from_another_admin(second_admin, clinician):
    response = api_client(second_admin).delete(f"/api/v1/staff/{_staff(clinician).pk}/")

    assert response.status_code == 404


def test_it_refuses_anonymous_to_remove_staff(clinician):
    assert api_client().delete(f"/api/v1/staff/{_staff(clinician).pk}/").status_code == 401
