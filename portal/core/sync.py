"""Mirror chain events into the database.

Handlers re-read the current state of what an event names from the chain and
store it, so they are idempotent and stay right after a reorg rewinds the
cursor: delivering an event twice, or out of a since-orphaned block, changes
nothing that the chain does not say.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from chain.cursor import EventCursor
from chain.errors import ChainUnavailable
from chain.registry import ChainEvent
from portal.core import chain as portal_chain
from portal.core.models import ChainEventRecord, ChainSyncState

log = logging.getLogger(__name__)

Handler = Callable[[ChainEvent], None]
HANDLERS: dict[str, list[Handler]] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler for chain events of these names."""

    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS.setdefault(name, []).append(fn)
        return fn

    return register


class _DatabaseStore:
    def __init__(self, state: ChainSyncState) -> None:
        self.state = state

    def load(self) -> tuple[int | None, str | None]:
        return self.state.last_block, self.state.last_block_hash or None

    def save(self, block: int, block_hash: str) -> None:
        self.state.last_block = block
        self.state.last_block_hash = block_hash
        self.state.save(update_fields=["last_block", "last_block_hash"])


@dataclass(frozen=True)
class SyncResult:
    processed: int
    head: int | None
    rewound: bool = False
    error: str = ""


def _announce(events: list[dict[str, object]]) -> None:
    """Tell open pages what changed; a lost announcement only delays a refresh."""
    if not events:
        return
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        from portal.core.consumers import SYNC_GROUP

        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(
                SYNC_GROUP, {"type": "chain.event", "event": {"events": events}}
            )
    except Exception:
        log.warning("could not announce chain events", exc_info=True)


def _dispatch(event: ChainEvent) -> None:
    _, created = ChainEventRecord.objects.get_or_create(
        tx_hash=event.tx_hash,
        log_index=event.log_index,
        defaults={
            "block_number": event.block_number,
            "block_hash": event.block_hash,
            "name": event.name,
            "args": _jsonable(event.args),
        },
    )
    # Handlers run even for a seen event: they are idempotent and a reorg may
    # have changed what the chain now says.
    for handler in HANDLERS.get(event.name, []):
        handler(event)


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def chain_sync_run() -> SyncResult:
    """Process every new event up to the chain head; safe to run concurrently."""
    state, _ = ChainSyncState.objects.get_or_create(name="registry")
    try:
        followed = portal_chain.followed_contracts()
        client = portal_chain.client()
        total = 0
        rewound = False
        head: int | None = None
        seen: list[dict[str, object]] = []

        def dispatch(event: ChainEvent) -> None:
            _dispatch(event)
            seen.append({"name": event.name, "block": event.block_number})

        while True:
            with transaction.atomic():
                locked = ChainSyncState.objects.select_for_update().get(pk=state.pk)
                cursor = EventCursor(
                    client,
                    [(d.address, abi) for d, abi in followed],
                    _DatabaseStore(locked),
                    start_block=min(d.block_number for d, _ in followed),
                )
                result = cursor.poll(dispatch)
                locked.head_block = result.head
                locked.events_processed += result.processed
                locked.reorgs += int(result.rewound)
                locked.last_error = ""
                locked.last_run_at = locked.last_success_at = timezone.now()
                locked.save()
            total += result.processed
            rewound = rewound or result.rewound
            head = result.head
            if result.to_block is None or result.to_block >= result.head:
                break
        transaction.on_commit(lambda: _announce(seen))
        return SyncResult(processed=total, head=head, rewound=rewound)
    except (ChainUnavailable, portal_chain.NotDeployed) as exc:
        log.warning("chain sync failed: %s", exc)
        ChainSyncState.objects.filter(pk=state.pk).update(
            last_error=str(exc), last_run_at=timezone.now()
        )
        return SyncResult(processed=0, head=None, error=str(exc))
