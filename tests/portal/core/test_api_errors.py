"""Every answer under /api/ is JSON: unknown paths, malformed ids, malformed bodies, and the
errors Django itself raises; with DEBUG on too, where Django would show its debug page."""

from __future__ import annotations

import json

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from portal.core.apis import bad_request, server_error
from tests.factories import api_client

pytestmark = pytest.mark.django_db


def _assert_json(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert isinstance(body["error"], str) and body["error"]
    assert body["code"] == code
    return body


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here/",
        "/api/v2/members/",
        "/api/v1/datasets/not-a-uuid/",
        "/api/v1/datasets/uploads/12345/chunks/0/",
        "/api/v1/members/-1/",
        "/api/v1/proposals/1.5/",
    ],
)
def test_it_answers_a_path_no_route_matches_with_a_json_404(settings, debug, path):
    settings.DEBUG = debug

    body = _assert_json(Client().get(path), 404, "not_found")

    assert path in body["error"]


def test_it_answers_every_method_with_a_json_404_and_no_csrf_page():
    client = Client(enforce_csrf_checks=True)

    for method in ("post", "put", "patch", "delete"):
        _assert_json(getattr(client, method)("/api/v1/nothing-here/"), 404, "not_found")


def test_it_names_the_missing_trailing_slash(member_admin):
    body = _assert_json(api_client(member_admin).get("/api/v1/members"), 404, "not_found")

    assert "/api/v1/members/" in body["error"]
    assert "slash" in body["error"]


def test_it_leaves_the_pages_404_alone(settings):
    settings.DEBUG = False

    response = Client().get("/no-such-page/")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_it_answers_malformed_json_with_a_json_400():
    response = APIClient().post(
        "/api/v1/auth/token/", data='{"username": ', content_type="application/json"
    )

    body = _assert_json(response, 400, "parse_error")
    assert "JSON" in body["error"]


def test_it_answers_an_unparsed_content_type_with_a_json_415():
    response = APIClient().post("/api/v1/auth/token/", data="username=x", content_type="text/plain")

    body = _assert_json(response, 415, "unsupported_media_type")
    assert "text/plain" in body["error"]


def test_it_answers_a_body_django_refuses_with_a_json_400(settings):
    settings.DEBUG = False
    fields = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))

    response = Client(raise_request_exception=False).post(
        "/api/v1/auth/token/", data=fields, content_type="application/x-www-form-urlencoded"
    )

    body = _assert_json(response, 400, "bad_request")
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in body["error"]


def test_it_answers_a_body_of_the_wrong_shape_with_a_json_400(member_admin):
    response = api_client(member_admin).post(
        "/api/v1/invitations/", data="[1, 2]", content_type="application/json"
    )

    _assert_json(response, 400, "invalid")


def test_its_error_handlers_answer_json_under_api_only():
    request = RequestFactory().get("/api/v1/members/")
    page = RequestFactory().get("/members/")

    _assert_json(server_error(request), 500, "server_error")
    _assert_json(bad_request(request, ValueError("bad host")), 400, "bad_request")
    assert not server_error(page)["Content-Type"].startswith("application/json")
    assert not bad_request(page, ValueError("x"))["Content-Type"].startswith("application/json")


def test_it_answers_a_failing_api_view_with_a_json_500(settings, monkeypatch):
    settings.DEBUG = False

    def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("portal.core.apis.health_report", broken)

    response = Client(raise_request_exception=False).get("/api/v1/health/")

    body = _assert_json(response, 500, "server_error")
    assert "a bug" not in body["error"]
