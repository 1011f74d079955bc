"""Counters in the shared cache, and the client address they are kept for.

Every web and worker process sees the same counts (settings.CACHES: Redis in production,
files under var/ in the embedded stack), so a limit holds across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle


def client_address(request: HttpRequest) -> str:
    """The caller's address, as the throttles see it: X-Forwarded-For counts only as far
    as REST_FRAMEWORK["NUM_PROXIES"] trusted proxies of our own wrote it."""
    return str(BaseThrottle().get_ident(request))  # type: ignore[arg-type]


#: Seconds since the epoch; a test moves it past a window's end instead of sleeping.
clock: Callable[[], float] = time.time


def _bucket(key: str, seconds: int) -> tuple[str, int]:
    now = int(clock())
    return f"{key}:{now // seconds}", seconds - now % seconds


def window_hit(key: str, *, seconds: int) -> int:
    """Count one hit on ``key`` in the current fixed window of ``seconds``; the count so far."""
    bucket, left = _bucket(key, seconds)
    if cache.add(bucket, 1, timeout=left):
        return 1
    try:
        count = int(cache.incr(bucket))
    except ValueError:  # expired between add and incr: the window starts again
        cache.set(bucket, 1, timeout=left)
        return 1
    # Some backends' incr() re-sets the value with their default timeout: restore the window's.
    cache.touch(bucket, left)
    return count


def window_count(key: str, *, seconds: int) -> tuple[int, int]:
    """The hits on ``key`` in the current window, and the seconds until it ends."""
    bucket, left = _bucket(key, seconds)
    return int(cache.get(bucket, 0)), left


def window_clear(key: str, *, seconds: int) -> None:
    cache.delete(_bucket(key, seconds)[0])
