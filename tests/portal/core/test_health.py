from __future__ import annotations

import pytest

from portal.core import chain as portal_chain

pytestmark = pytest.mark.django_db


def test_it_reports_every_part_healthy(consortium, client):
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ok"] is True
    assert set(body["checks"]) == {"database", "broker", "chain", "sync"}
    assert body["checks"]["sync"]["lag_blocks"] <= 1
    assert client.get("/api/v1/health/").status_code == 200


def test_it_answers_503_and_says_what_is_wrong(client, settings):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    portal_chain.use_client(None)
    portal_chain._local.__dict__.clear()
    try:
        response = client.get("/health")
    finally:
        portal_chain._local.__dict__.clear()
    body = response.json()
    assert response.status_code == 503
    assert body["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["chain"]["ok"] is False and body["checks"]["chain"]["error"]
    assert "not been synced" in body["checks"]["sync"]["error"]
