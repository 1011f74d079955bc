"""API tokens, from the attacker's side: a copy of the database holds no usable key, a
token stops working when it expires or its holder revokes it, and nobody sees or revokes
another's tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from portal.core.models import ApiToken

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
TOKENS = "/api/v1/auth/tokens/"


def _issue(username: str = "mary-clinician", password: str = "mary-pass-123") -> dict:
    response = APIClient().post(TOKEN, {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_it_keeps_no_usable_key_in_the_database(clinician):
    key = _issue()["token"]

    with connection.cursor() as cur:
        cur.execute("SELECT * FROM core_apitoken")
        stored = " ".join(str(v) for row in cur.fetchall() for v in row)
    assert key not in stored
    hashed = ApiToken.objects.get().key_hash
    assert _with(hashed).get("/api/v1/me/").status_code == 401


def test_it_issues_a_new_token_on_each_request(clinician):
    first, second = _issue(), _issue()

    assert first["token"] != second["token"]
    assert _with(first["token"]).get("/api/v1/me/").status_code == 200
    assert _with(second["token"]).get("/api/v1/me/").status_code == 200


def test_it_gives_a_token_the_configured_expiry(clinician, settings):
    settings.API_TOKEN_DAYS = 7

    issued = _issue()

    token = ApiToken.objects.get(pk=issued["id"])
    assert abs(token.expires - timezone.now() - timedelta(days=7)) < timedelta(minutes=1)
    assert issued["expires"].startswith(token.expires.date().isoformat())


def test_it_refuses_an_expired_token(clinician):
    key = _issue()["token"]
    ApiToken.objects.update(expires=timezone.now() - timedelta(seconds=1))

    response = _with(key).get("/api/v1/me/")

    assert response.status_code == 401
    assert "expired" in response.json()["error"]


def test_it_lists_the_holders_tokens_without_their_keys(clinician, member_admin):
    first, second = _issue(), _issue()
    other = ApiToken.objects.create(
        user=member_admin, key_hash="0" * 64, prefix="mc_other", expires=timezone.now()
    )

    listed = _with(second["token"]).get(TOKENS)

    assert listed.status_code == 200
    rows = listed.json()["results"]
    assert [r["id"] for r in rows] == [second["id"], first["id"]]
    assert [r["current"] for r in rows] == [True, False]
    assert rows[0]["prefix"] == second["token"][:10]
    assert other.pk not in [r["id"] for r in rows]
    assert first["token"] not in listed.content.decode()


def test_it_stops_a_revoked_token_at_once(clinician):
    first, second = _issue(), _issue()

    response = _with(second["token"]).delete(f"{TOKENS}{first['id']}/")

    assert response.status_code == 204
    assert _with(first["token"]).get("/api/v1/me/").status_code == 401
    assert _with(second["token"]).get("/api/v1/me/").status_code == 200


def test_it_refuses_to_revoke_another_users_token(clinician, second_admin):
    victim = ApiToken.objects.create(
        user=second_admin, key_hash="1" * 64, prefix="mc_victim", expires=timezone.now()
    )

    response = _with(_issue()["token"]).delete(f"{TOKENS}{victim.pk}/")

    assert response.status_code == 404
    assert ApiToken.objects.filter(pk=victim.pk).exists()


def test_it_refuses_the_token_list_to_anonymous(db):
    assert APIClient().get(TOKENS).status_code == 401


def test_it_gives_a_node_token_the_node_expiry(node_token_user, settings):
    from portal.core.tokens import api_token_issue

    settings.NODE_TOKEN_DAYS = 90
    token, _ = api_token_issue(user=node_token_user, kind=ApiToken.Kind.NODE)

    assert (token.expires - token.created).days == 90


@pytest.fixture
def node_token_user(db):
    from tests.factories import UserFactory

    return UserFactory(username="node-0123")


@pytest.mark.django_db(transaction=True)
def test_it_adopts_old_plaintext_tokens_as_hashes_and_drops_their_table(clinician_user):
    import importlib

    from django.apps import apps

    from portal.core.tokens import key_hash

    migration = importlib.import_module("portal.core.migrations.0002_api_token")
    old_key = "a" * 40
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE authtoken_token (key varchar(40), user_id integer)")
        cur.execute("INSERT INTO authtoken_token VALUES (%s, %s)", [old_key, clinician_user.pk])

    with connection.schema_editor() as editor:
        migration._adopt_authtoken_keys(apps, editor)

    assert "authtoken_token" not in connection.introspection.table_names()
    adopted = ApiToken.objects.get()
    assert adopted.key_hash == key_hash(old_key) and adopted.user == clinician_user
    assert _with(old_key).get("/api/v1/me/").status_code == 200
    assert adopted.expires > timezone.now() + timedelta(days=29)


@pytest.fixture
def clinician_user(db):
    from tests.factories import UserFactory

    return UserFactory(username="old-integration")
