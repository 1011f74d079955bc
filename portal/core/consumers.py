from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

SYNC_GROUP = "chain-sync"


class ChainSyncConsumer(AsyncJsonWebsocketConsumer):
    """Pushes each mirrored chain event to signed-in pages, so tallies update live."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        await self.channel_layer.group_add(SYNC_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(SYNC_GROUP, self.channel_name)

    async def chain_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])
