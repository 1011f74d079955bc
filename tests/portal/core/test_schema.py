from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

CONSORTIUM_PATHS = [
    "/api/v1/auth/token/",
    "/api/v1/me/",
    "/api/v1/members/",
    "/api/v1/members/{member_id}/",
    "/api/v1/members/{member_id}/removal/typed-data/",
    "/api/v1/members/{member_id}/removal/",
    "/api/v1/members/{member_id}/rotation/typed-data/",
    "/api/v1/members/{member_id}/rotation/",
    "/api/v1/applications/",
    "/api/v1/applications/typed-data/",
    "/api/v1/applications/awaiting-sponsor/",
    "/api/v1/applications/{member_id}/sponsor/typed-data/",
    "/api/v1/applications/{member_id}/sponsor/",
    "/api/v1/proposals/",
    "/api/v1/proposals/{proposal_id}/",
    "/api/v1/proposals/{proposal_id}/vote/typed-data/",
    "/api/v1/proposals/{proposal_id}/vote/",
    "/api/v1/proposals/{proposal_id}/finalize/",
    "/api/v1/staff/",
    "/api/v1/staff/{staff_id}/",
    "/api/v1/invitations/",
    "/api/v1/invitations/sent/",
    "/api/v1/invitations/accept/",
]


def test_it_generates_a_valid_schema_without_warnings(tmp_path: Path):
    out = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    assert "openapi: 3" in out.read_text()


def test_it_serves_the_schema_with_every_consortium_route(db):
    response = APIClient().get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    missing = [p for p in CONSORTIUM_PATHS if p not in paths]
    assert missing == []
    assert "Error" in response.json()["components"]["schemas"]
    assert "tokenAuth" in response.json()["components"]["securitySchemes"]


def test_it_marks_the_public_routes_as_needing_no_login(db):
    paths = APIClient().get("/api/schema/", {"format": "json"}).json()["paths"]

    for path in ("/api/v1/applications/", "/api/v1/auth/token/", "/api/v1/invitations/accept/"):
        assert paths[path]["post"]["security"] == [{}], path
    assert {"tokenAuth": []} in paths["/api/v1/me/"]["get"]["security"]


def test_it_serves_the_browsable_docs(db):
    assert APIClient().get("/api/docs/").status_code == 200
