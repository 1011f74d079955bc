"""An admin signed in with the password alone, without the TOTP code, can change nothing:
every route the portal has, page or API, is walked from the URL resolver, so a route
added later is covered without anyone remembering to list it."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from portal.consortium.middleware import OPEN_PREFIXES
from tests.factories import SuperuserFactory
from tests.routes import fill, routes

pytestmark = pytest.mark.django_db

# Filled into path parameters by converter; a real object is not needed, since the
# refusal must come before the route looks anything up.
SAMPLES = {"int": "1", "uuid": str(uuid.UUID(int=1)), "str": "0x" + "ab" * 32}


def _fill(route: str) -> str:
    if route.startswith("^"):  # a catch-all (the API's JSON 404): any path under it
        route = route.strip("^$") + "no-such-route/"
    return fill(route, lambda converter, name: SAMPLES.get(converter))


def _portal_paths() -> list[str]:
    # The Django admin's own routes are covered by the governance admin's tests.
    return sorted(_fill(route) for route, _ in routes() if not route.startswith("admin/"))


PATHS = _portal_paths()
GUARDED = [p for p in PATHS if not p.startswith(OPEN_PREFIXES)]


def test_it_leaves_open_only_signing_in_health_and_the_schema():
    opened = sorted(p for p in PATHS if p.startswith(OPEN_PREFIXES))

    assert opened == [
        "/accounts/invitations/" + SAMPLES["str"] + "/",
        "/accounts/login/",
        "/accounts/logout/",
        "/accounts/two-factor/",
        "/api/docs/",
        "/api/schema/",
        "/api/v1/auth/token/",
        "/api/v1/health/",
        "/health",
    ]
    assert "/api/v1/nodes/" + SAMPLES["str"] + "/token/" in GUARDED


@pytest.fixture(params=["member admin", "governor"])
def password_only(request, member_admin) -> Client:
    """A session that gave the right password and never the TOTP code."""
    client = Client()
    client.force_login(member_admin if request.param == "member admin" else SuperuserFactory())
    return client


@pytest.mark.parametrize("path", GUARDED)
def test_it_refuses_every_action_to_a_password_only_admin(password_only, path, consortium):
    for method in ("post", "put", "patch", "delete"):
        response = getattr(password_only, method)(path, {}, content_type="application/json")
        if path.startswith("/api/"):
            assert response.status_code == 403, (method, path, response.content[:200])
            assert response.json()["code"] == "second_factor_required"
        else:
            assert response.status_code == 302, (method, path)
            assert response["Location"].startswith("/accounts/two-factor/")
