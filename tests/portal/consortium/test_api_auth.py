from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import (
    SuperuserFactory,
    TOTPDeviceFactory,
    api_client,
    totp_code,
    verified_login,
)

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"


def test_it_gives_a_clinician_a_token_for_a_password(clinician):
    response = APIClient().post(
        TOKEN, {"username": "mary-clinician", "password": "mary-pass-123"}, format="json"
    )

    assert response.status_code == 200
    token = response.json()["token"]
    assert response.json()["user"]["username"] == "mary-clinician"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = client.get("/api/v1/me/")
    assert me.status_code == 200
    assert me.json()["role"] == "clinician"


def test_it_refuses_a_wrong_password(clinician):
    response = APIClient().post(
        TOKEN, {"username": "mary-clinician", "password": "wrong"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "the username or password is wrong"


def test_it_names_the_missing_fields(db):
    response = APIClient().post(TOKEN, {}, format="json")

    assert response.status_code == 400
    assert response.json()["error"].startswith("username:")
    assert set(response.json()["detail"]) == {"username", "password"}


def test_it_asks_an_admin_for_the_two_factor_code(member_admin):
    TOTPDeviceFactory(user=member_admin)

    response = APIClient().post(
        TOKEN, {"username": "mary-admin", "password": "mary-pass-123"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "otp_required"
    assert "authenticator" in response.json()["error"]


def test_it_tells_an_admin_without_a_device_to_set_one_up(member_admin):
    response = APIClient().post(
        TOKEN,
        {"username": "mary-admin", "password": "mary-pass-123", "otp_token": "123456"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "otp_not_set_up"


def test_it_refuses_an_admin_a_wrong_code(member_admin):
    device = TOTPDeviceFactory(user=member_admin)
    wrong = f"{(int(totp_code(device)) + 1) % 10**6:06d}"

    response = APIClient().post(
        TOKEN,
        {"username": "mary-admin", "password": "mary-pass-123", "otp_token": wrong},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "otp_invalid"


def test_it_gives_an_admin_a_token_for_password_and_code(member_admin):
    device = TOTPDeviceFactory(user=member_admin)

    response = APIClient().post(
        TOKEN,
        {"username": "mary-admin", "password": "mary-pass-123", "otp_token": totp_code(device)},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["token"]


def test_it_refuses_a_code_used_twice(member_admin):
    device = TOTPDeviceFactory(user=member_admin)
    body = {"username": "mary-admin", "password": "mary-pass-123", "otp_token": totp_code(device)}
    assert APIClient().post(TOKEN, body, format="json").status_code == 200

    again = APIClient().post(TOKEN, body, format="json")

    assert again.status_code == 400
    assert again.json()["code"] == "otp_invalid"


def test_it_asks_a_governor_for_the_two_factor_code_too(db):
    SuperuserFactory(username="governor")

    response = APIClient().post(
        TOKEN, {"username": "governor", "password": "a-long-pass-123"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "otp_not_set_up"


def test_it_tells_a_member_admin_who_they_are(member_admin, consortium):
    response = api_client(member_admin).get("/api/v1/me/")

    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == "mary-admin"
    assert body["member"]["name"] == "St. Mary's Hospital"
    assert body["role"] == "admin"
    assert body["status"] == "active"


def test_it_tells_the_outsider_its_application_is_pending(outsider):
    body = api_client(outsider).get("/api/v1/me/").json()

    assert body["member"]["name"] == "Harbour Hospital"
    assert body["status"] == "applied"


def test_it_answers_me_for_a_user_outside_any_member(db):
    response = api_client(SuperuserFactory()).get("/api/v1/me/")

    assert response.status_code == 200
    assert response.json()["member"] is None
    assert response.json()["role"] is None


def test_it_refuses_me_to_anonymous(db):
    response = APIClient().get("/api/v1/me/")

    assert response.status_code == 401
    assert response.json()["error"]


def test_it_refuses_an_admin_session_without_the_second_factor(member_admin):
    client = APIClient()
    client.force_login(member_admin)

    response = client.get("/api/v1/me/")

    assert response.status_code == 403
    assert "two-factor" in response.json()["error"]


def test_it_accepts_an_admin_session_with_the_second_factor(member_admin):
    client = APIClient()
    verified_login(client, member_admin)

    assert client.get("/api/v1/me/").status_code == 200


def test_it_accepts_a_clinician_session(clinician):
    client = APIClient()
    client.force_login(clinician)

    assert client.get("/api/v1/me/").status_code == 200


def test_it_refuses_a_session_write_without_a_csrf_token(member_admin):
    client = APIClient(enforce_csrf_checks=True)
    verified_login(client, member_admin)

    response = client.post("/api/v1/invitations/", {"email": "a@b.org", "role": "clinician"})

    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
