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
    response = client.get("/health")
    body = response.json()
    assert response.status_code == 503
    assert body["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["chain"]["ok"] is False and body["checks"]["chain"]["error"]
    assert "not been synced" in body["checks"]["sync"]["error"]


def test_it_tells_anonymous_callers_only_ok_and_keeps_rpc_credentials(consortium, client, settings):
    settings.CHAIN_RPC_URL = "https://relay:s3cret@rpc.example:8545/v1/KEY123?token=abc"
    portal_chain.use_client(None)
    anonymous = client.get("/health")
    client.force_login(SuperuserFactory())
    governor = client.get("/health")

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


def test_it_pings_a_redis_broker_over_one_connection_per_process(client, monkeypatch):
    import redis

    from portal.core import apis

    url = "redis://127.0.0.1:6379/13"
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # read first by celery's conf.broker_url
    monkeypatch.setattr(apis, "_redis_clients", {})
    connects = []
    real_connect = redis.Connection.on_connect
    monkeypatch.setattr(
        redis.Connection, "on_connect", lambda self: connects.append(1) or real_connect(self)
    )
    client.force_login(SuperuserFactory())

    brokers = [client.get("/health").json()["checks"]["broker"] for _ in range(5)]

    assert all(broker["ok"] for broker in brokers), brokers
    assert brokers[0]["url"] == "redis://127.0.0.1/13 (port 6379)"
    assert len(connects) == 1
