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

    assert first == "django.core.cache.backends.redis.RedisCache 1"
    assert second == "django.core.cache.backends.redis.RedisCache 2"
    redis.Redis.from_url(url).flushdb()
