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


def _schema() -> dict:
    return APIClient().get("/api/schema/", {"format": "json"}).json()


def test_it_documents_the_error_answers_of_each_route(db):
    paths = _schema()["paths"]

    withdraw = paths["/api/v1/datasets/{dataset_id}/withdraw/"]["post"]["responses"]
    assert set(withdraw) == {"200", "400", "401", "403", "404", "409", "415", "503"}
    apply = paths["/api/v1/applications/"]["post"]["responses"]
    assert {"400", "415", "429", "503"} <= set(apply)
    assert "401" not in apply and "403" not in apply
    members = paths["/api/v1/members/"]["get"]["responses"]
    assert set(members) == {"200", "401", "403", "404"}  # 404: a page past the last
    for path, operations in paths.items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")) and not path.endswith(("/health/", "/health")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/Error", (method, path, code)
                    assert response["description"], (method, path, code)


def test_it_publishes_the_patterns_and_lengths_the_inputs_enforce(db):
    schemas = _schema()["components"]["schemas"]

    submit = schemas["ApplicationSubmitInput"]["properties"]
    assert submit["governance_address"]["pattern"] == "^0x[0-9a-fA-F]{40}$"
    assert submit["data_public_key"]["maxLength"] == 66
    assert submit["signature"]["pattern"] == "^(0x)?[0-9a-fA-F]{130}$"
    assert submit["admin_username"]["maxLength"] == 150
    withdraw = schemas["DatasetWithdrawInput"]["properties"]
    assert withdraw["signature"]["pattern"] == "^((0x)?[0-9a-fA-F]{130})?$"
    assert "demo_keystore" in withdraw["signature"]["description"]
    assert withdraw["demo_keystore"]["type"] == "boolean"
    grant = schemas["DatasetGrantAddInput"]["properties"]
    assert grant["wrapped_key"]["pattern"] == "^0x[0-9a-fA-F]{184}$"


LIST_PATHS = [
    "/api/v1/members/",
    "/api/v1/applications/awaiting-sponsor/",
    "/api/v1/proposals/",
    "/api/v1/nodes/",
    "/api/v1/datasets/",
    "/api/v1/datasets/{dataset_id}/versions/",
    "/api/v1/datasets/{dataset_id}/grants/",
    "/api/v1/datasets/{dataset_id}/access-log/",
    "/api/v1/staff/",
    "/api/v1/invitations/sent/",
    "/api/v1/auth/tokens/",
]


def test_it_documents_every_list_route_as_paged(db):
    schema = _schema()
    schemas = schema["components"]["schemas"]

    for path in LIST_PATHS:
        operation = schema["paths"][path]["get"]
        assert {p["name"] for p in operation["parameters"]} >= {"page", "page_size"}, path
        ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        page = schemas[ref.rsplit("/", 1)[1]]
        assert set(page["properties"]) == {"count", "next", "previous", "results"}, path
        assert page["properties"]["results"]["type"] == "array", path
    page_size = next(
        p
        for p in schema["paths"]["/api/v1/datasets/"]["get"]["parameters"]
        if p["name"] == "page_size"
    )
    assert "at most 1000" in page_size["description"]
