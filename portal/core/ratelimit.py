"""Counters in the shared cache, and the client address they are kept for.

Every web and worker process sees the same counts (settings.CACHES: Redis in production,
files under var/ in the embedded stack), so a limit holds across processes.
"""

from __future__ import annotations

import math
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
    """Count one hit on ``key`` in the current fixed window of ``seconds``; the count so far.

    The count is kept through the next window too, for window_recent."""
    bucket, left = _bucket(key, seconds)
    keep = left + seconds
    if cache.add(bucket, 1, timeout=keep):
        return 1
    try:
        count = int(cache.incr(bucket))
    except ValueError:  # expired between add and incr: the window starts again
        cache.set(bucket, 1, timeout=keep)
        return 1
    # Some backends' incr() re-sets the value with their default timeout: restore the window's.
    cache.touch(bucket, keep)
    return count


def window_recent(key: str, *, seconds: int) -> int:
    """The hits on ``key`` in this window and the one before: at least every hit of the
    last ``seconds``, so a burst that straddles a window's edge is counted whole."""
    now = int(clock()) // seconds
    return sum(int(cache.get(f"{key}:{n}", 0)) for n in (now, now - 1))


def window_clear(key: str, *, seconds: int) -> None:
    """Forget ``key``'s hits in this window and the one before."""
    now = int(clock()) // seconds
    cache.delete_many([f"{key}:{now}", f"{key}:{now - 1}"])


def lock_set(key: str, *, seconds: int) -> None:
    """Lock ``key`` for ``seconds`` from now (a later call extends the lock)."""
    cache.set(f"{key}:locked", clock() + seconds, timeout=seconds)


def lock_left(key: str) -> int:
    """Seconds left on ``key``'s lock; 0 when it is not locked."""
    until = cache.get(f"{key}:locked")
    return max(0, math.ceil(until - clock())) if until is not None else 0
