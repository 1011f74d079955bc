"""Throttle and lockout counters are shared by every process of a stack, not kept per process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

SCRIPT = """
import django
django.setup()
from django.conf import settings
from portal.core.ratelimit import window_hit
print(settings.CACHES["default"]["BACKEND"], window_hit("signin:address:198.51.100.7", seconds=900))
"""


def _run(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


def test_it_counts_across_processes_in_the_embedded_stack(tmp_path: Path):
    env = {"MEDCHAIN_VAR_DIR": str(tmp_path), "REDIS_URL": ""}

    first, second = _run(env), _run(env)

    assert first == "django.core.cache.backends.filebased.FileBasedCache 1"
    assert second == "django.core.cache.backends.filebased.FileBasedCache 2"
    assert any((tmp_path / "cache").iterdir())


@pytest.mark.integration
def test_it_counts_across_processes_in_redis(tmp_path: Path):
    url = "redis://127.0.0.1:6379/11"
    redis.Redis.from_url(url).flushdb()
    env = {"MEDCHAIN_VAR_DIR": str(tmp_path), "REDIS_URL": url}

    first, second = _run(env), _run(env)

    assert first == "portal.core.cache.SharedRedisCache 1"
    assert second == "portal.core.cache.SharedRedisCache 2"
    redis.Redis.from_url(url).flushdb()


@pytest.mark.integration
def test_the_redis_cache_keeps_one_connection_per_process_across_contexts(monkeypatch):
    """Under ASGI each request has a context of its own, and with it a cache backend of its
    own: they share one client, so requests that throttle do not each open a connection."""
    import contextvars
    import threading

    from django.core.cache import caches

    from portal.core import cache as shared

    url = "redis://127.0.0.1:6379/11"
    monkeypatch.setattr(shared, "_clients", {})
    connects: list[int] = []
    real_connect = redis.Connection.on_connect
    monkeypatch.setattr(
        redis.Connection, "on_connect", lambda self: connects.append(1) or real_connect(self)
    )
    config = {"default": {"BACKEND": "portal.core.cache.SharedRedisCache", "LOCATION": url}}
    backends = []

    def request(i: int) -> None:  # what an ASGI request does: a new context, a new thread
        backend = caches.create_connection("default")
        backends.append(backend)
        backend.set(f"hit:{i}", i, 60)
        assert backend.get(f"hit:{i}") == i

    from django.test import override_settings

    with override_settings(CACHES=config):
        for i in range(10):
            thread = threading.Thread(target=contextvars.copy_context().run, args=(request, i))
            thread.start()
            thread.join()

    assert len({id(b) for b in backends}) == 10
    assert len(connects) == 1
    redis.Redis.from_url(url).flushdb()
