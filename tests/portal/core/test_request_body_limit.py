"""Oversized bodies, from the attacker's side: refused before anything parses them."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_it_refuses_a_20_mb_json_body_on_an_anonymous_route(db):
    body = json.dumps({"username": "x" * (20 * 1024 * 1024), "password": "p"})

    response = APIClient().generic(
        "POST", "/api/v1/auth/token/", body, content_type="application/json"
    )

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert "1048576" in response.json()["error"]


def test_it_refuses_an_oversized_form_with_a_page(db):
    response = Client().post(
        "/accounts/login/", {"username": "x" * (2 * 1024 * 1024), "password": "p"}
    )

    assert response.status_code == 413
    assert "Too much data" in response.content.decode()


def test_it_follows_the_request_max_bytes_setting(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = json.dumps({"username": "x" * 200, "password": "p"})

    response = APIClient().generic(
        "POST", "/api/v1/auth/token/", body, content_type="application/json"
    )

    assert response.status_code == 413


def test_it_leaves_the_chunk_route_to_its_own_cap(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    url = f"/api/v1/datasets/uploads/{uuid.uuid4()}/chunks/0/"

    response = APIClient().generic(
        "PUT", url, b"\0" * 4096, content_type="application/octet-stream"
    )

    # Past the middleware: the view's own checks answer (here: who is asking).
    assert response.status_code == 401


def test_it_lets_a_large_datasets_manifest_through_to_the_upload_route(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    settings.DATASET_MAX_BYTES = 10 * 1024 * 1024  # a manifest of 11 chunks at most
    manifest = {"chunks": [{"index": i, "sha256": "0" * 64, "size": 1} for i in range(11)]}
    body = json.dumps({"manifest": manifest})
    assert len(body) > 100

    response = APIClient().generic(
        "POST", "/api/v1/datasets/uploads/", body, content_type="application/json"
    )
    oversized = APIClient().generic(
        "POST", "/api/v1/datasets/uploads/", "x" * 4000, content_type="application/json"
    )

    assert response.status_code == 401  # past the cap: the view asks who is asking
    assert oversized.status_code == 413
