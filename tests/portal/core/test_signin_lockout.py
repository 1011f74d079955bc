"""Password and two-factor guessing, from the attacker's side: the sign-in page, the API
token route and the two-factor step lock out an account, and an address, for a while."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from portal.core import ratelimit
from tests.factories import TOTPDeviceFactory, totp_code

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
TOKEN = "/api/v1/auth/token/"
TWO_FACTOR = "/accounts/two-factor/"


@pytest.fixture(autouse=True)
def _small_limits(settings):
    settings.SIGNIN_MAX_FAILURES_PER_ACCOUNT = 3
    settings.SIGNIN_MAX_FAILURES_PER_ADDRESS = 5
    settings.SIGNIN_LOCKOUT_SECONDS = 900
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # django-otp's own per-device delay, out of the way


def _login(username: str, password: str, address: str = "198.51.100.7"):
    return Client().post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_it_locks_the_sign_in_page_after_repeated_wrong_passwords(clinician):
    for guess in range(3):
        assert _login("mary-clinician", f"guess-{guess}").status_code == 200

    locked = _login("mary-clinician", "guess-3")

    assert locked.status_code == 429
    assert "Too many failed sign-ins for this account" in locked.content.decode()
    right = _login("mary-clinician", "mary-pass-123")
    assert right.status_code == 429
    assert "_auth_user_id" not in right.client.session


def test_it_locks_an_account_guessed_from_many_addresses(clinician):
    for n in range(3):
        _login("mary-clinician", "wrong", address=f"203.0.113.{n}")

    assert _login("mary-clinician", "mary-pass-123", address="203.0.113.99").status_code == 429


def test_it_locks_an_address_that_guesses_many_accounts(clinician, member_admin):
    for n in range(5):
        _login(f"someone-{n}", "wrong")

    assert _login("mary-clinician", "mary-pass-123").status_code == 429
    elsewhere = _login("mary-clinician", "mary-pass-123", address="192.0.2.1")
    assert elsewhere.status_code == 302


def test_it_unlocks_when_the_window_ends(clinician, monkeypatch):
    now = 1_000_000 * 900.0
    monkeypatch.setattr(ratelimit, "clock", lambda: now)
    for _ in range(3):
        _login("mary-clinician", "wrong")
    assert _login("mary-clinician", "mary-pass-123").status_code == 429

    monkeypatch.setattr(ratelimit, "clock", lambda: now + 900)

    assert _login("mary-clinician", "mary-pass-123").status_code == 302


def test_it_locks_for_a_whole_window_across_a_window_edge(clinician, monkeypatch):
    edge = 1_000_000 * 900.0
    monkeypatch.setattr(ratelimit, "clock", lambda: edge - 1)
    for _ in range(2):
        _login("mary-clinician", "wrong")
    monkeypatch.setattr(ratelimit, "clock", lambda: edge + 1)
    _login("mary-clinician", "wrong")  # the third, in the next window

    assert _login("mary-clinician", "mary-pass-123").status_code == 429
    monkeypatch.setattr(ratelimit, "clock", lambda: edge + 900)
    assert _login("mary-clinician", "mary-pass-123").status_code == 429  # 899 s into the lock
    monkeypatch.setattr(ratelimit, "clock", lambda: edge + 901)
    assert _login("mary-clinician", "mary-pass-123").status_code == 302


def test_it_forgives_an_account_its_failures_after_a_sign_in(clinician):
    for _ in range(2):
        _login("mary-clinician", "wrong")
    assert _login("mary-clinician", "mary-pass-123").status_code == 302

    for _ in range(2):
        _login("mary-clinician", "wrong")

    assert _login("mary-clinician", "mary-pass-123").status_code == 302


def test_it_locks_the_admin_sign_in_too(clinician):
    for _ in range(3):
        _login("mary-clinician", "wrong")

    response = Client().post(
        "/admin/login/",
        {"username": "mary-clinician", "password": "mary-pass-123"},
        REMOTE_ADDR="198.51.100.7",
    )

    assert response.status_code == 200  # the admin's form, refusing
    assert "_auth_user_id" not in response.client.session


def test_it_locks_the_token_route_after_repeated_wrong_passwords(clinician):
    body = {"username": "mary-clinician", "password": "wrong"}
    for _ in range(3):
        assert APIClient().post(TOKEN, body, format="json").status_code == 400

    right = {"username": "mary-clinician", "password": "mary-pass-123"}
    response = APIClient().post(TOKEN, right, format="json")

    assert response.status_code == 429
    assert response.json()["code"] == "signin_locked"
    assert "locked" in response.json()["error"]


def test_it_counts_wrong_codes_on_the_token_route(member_admin):
    device = TOTPDeviceFactory(user=member_admin)
    for guess in ("000001", "000002", "000003"):
        body = {"username": "mary-admin", "password": "mary-pass-123", "otp_token": guess}
        assert APIClient().post(TOKEN, body, format="json").json()["code"] == "otp_invalid"

    body = {"username": "mary-admin", "password": "mary-pass-123", "otp_token": totp_code(device)}
    response = APIClient().post(TOKEN, body, format="json")

    assert response.status_code == 429
    assert response.json()["code"] == "signin_locked"


def test_it_counts_wrong_codes_on_the_two_factor_page(member_admin):
    device = TOTPDeviceFactory(user=member_admin)
    client = Client(REMOTE_ADDR="198.51.100.7")
    client.force_login(member_admin)  # the password, not the code
    for guess in ("000001", "000002", "000003"):
        client.post(TWO_FACTOR, {"token": guess})

    response = client.post(TWO_FACTOR, {"token": totp_code(device)})

    assert response.status_code == 429
    assert "Too many failed sign-ins for this account" in response.content.decode()
    assert client.get("/members/").status_code == 302  # still sent to the two-factor page


def test_it_refuses_all_but_10_of_70_guesses_at_the_default_limits(clinician, settings):
    settings.SIGNIN_MAX_FAILURES_PER_ACCOUNT = 10  # the default
    settings.SIGNIN_MAX_FAILURES_PER_ADDRESS = 50

    statuses = [_login("mary-clinician", f"guess-{n}").status_code for n in range(70)]

    assert statuses[:10] == [200] * 10
    assert statuses[10:] == [429] * 60
