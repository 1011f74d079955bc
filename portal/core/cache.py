"""Django's Redis cache with one client and connection pool per process (docs/load.md).

Django keeps a cache backend per context, and under ASGI every request runs in a context
of its own: the stock ``RedisCache`` then built a client with a new connection pool on
every request that touched the cache (a throttle, the sign-in lockout), so each such
request opened a TCP connection to Redis, and built a ``redis.Redis`` (with its table of
~80 response callbacks) for every cache operation. redis-py's clients and pools are
thread-safe, and a pool starts afresh in a forked child (it checks the process id).
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[tuple[str, ...], SharedRedisCacheClient] = {}
_lock = threading.Lock()


class SharedRedisCacheClient(RedisCacheClient):
    """Django's client, whose pools each keep one ``redis.Redis`` for every operation."""

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._redis: dict[int, Any] = {}
        self._pool_lock = threading.Lock()

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        django: Any = self  # the attributes of Django's client, which its stubs do not declare
        index = django._get_connection_pool_index(write)
        client = self._redis.get(index)
        if client is None:
            with self._pool_lock:
                client = self._redis.get(index)
                if client is None:
                    pool = django._pool_class.from_url(
                        django._servers[index], **django._pool_options
                    )
                    django._pools[index] = pool
                    client = self._redis[index] = django._client(connection_pool=pool)
        return client


class SharedRedisCache(RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` sharing its client (and so its
    connections) among every backend instance of the process with the same servers and
    options."""

    @cached_property
    def _cache(self) -> SharedRedisCacheClient:
        servers, options = self._servers, self._options  # type: ignore[attr-defined]
        key = (*servers, repr(sorted(options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = SharedRedisCacheClient(servers, **options)
        return client
