from __future__ import annotations

import pytest
from django.core.cache import cache

from portal.core import chain as portal_chain
from portal.core.apis import HealthThrottle
from tests.factories import SuperuserFactory

pytestmark = pytest.mark.django_db


def test_it_reports_every_part_healthy_to_staff(consortium, member_admin, client):
    client.force_login(member_admin)
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ok"] is True
    assert set(body["checks"]) == {"database", "broker", "chain", "sync"}
    assert body["checks"]["sync"]["lag_blocks"] <= 1
    assert client.get("/api/v1/health/").status_code == 200


def test_it_answers_503_and_says_what_is_wrong(client, settings):
    client.force_login(SuperuserFactory())
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


def test_it_tells_anonymous_callers_only_ok_and_keeps_rpc_credentials(consortium, client, settings):
    settings.CHAIN_RPC_URL = "https://relay:s3cret@rpc.example:8545/v1/KEY123?token=abc"
    portal_chain.use_client(None)
    portal_chain._local.__dict__.clear()
    try:
        anonymous = client.get("/health")
        client.force_login(SuperuserFactory())
        governor = client.get("/health")
    finally:
        portal_chain._local.__dict__.clear()

    assert anonymous.json() == {"ok": False}
    assert anonymous.status_code == 503
    assert "checks" in governor.json()
    for response in (anonymous, governor):
        assert b"s3cret" not in response.content and b"token=abc" not in response.content


def test_it_throttles_anonymous_health_checks(consortium, client, monkeypatch):
    monkeypatch.setattr(HealthThrottle, "THROTTLE_RATES", {"health": "3/min"})
    cache.clear()
    try:
        statuses = [client.get("/health").status_code for _ in range(5)]
    finally:
        cache.clear()

    assert statuses == [200, 200, 200, 429, 429]
