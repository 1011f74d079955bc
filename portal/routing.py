from __future__ import annotations

from typing import Any

from django.urls import path

from portal.core.consumers import ChainSyncConsumer

websocket_urlpatterns: list[Any] = [
    path("ws/chain-sync/", ChainSyncConsumer.as_asgi()),  # type: ignore[arg-type]
]
