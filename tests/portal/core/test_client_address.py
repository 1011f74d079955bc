"""Throttle bypass, from the attacker's side: a client that writes its own X-Forwarded-For
is still counted as one address."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

# An anonymous route (throttled at 60/min) that refuses an empty body without hashing anything.
ROUTE = "/api/v1/auth/token/"


def _post(address: str, forwarded: str):
    return APIClient().post(
        ROUTE, {}, format="json", REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR=forwarded
    )


def test_it_throttles_a_client_that_rotates_x_forwarded_for(db):
    statuses = [_post("198.51.100.7", f"10.0.{n // 250}.{n % 250}").status_code for n in range(62)]

    assert statuses[:60] == [400] * 60
    assert statuses[60:] == [429, 429]


def test_it_takes_the_address_the_trusted_proxy_saw(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "10.1.1.1"
    # The client writes any first hop it likes; our proxy appends the address it saw.
    statuses = [_post(proxy, f"6.6.6.{n}, 203.0.113.5").status_code for n in range(61)]

    assert statuses[-1] == 429
    assert _post(proxy, "203.0.113.6").status_code == 400  # another client behind the proxy
