"""Mirror chain events into the database: one table of handlers, one way in.

Each app declares its handlers in its ``handlers.py`` as a table, ``{(contract, event name):
handler}``, and registers it from its ``AppConfig.ready()`` (core imports no app). Events reach
the handlers by one path, ``mirror()``: from the periodic sync, a contract's cursor a batch of
blocks at a time, and from a relayed transaction (``mirror_receipt``), so the page after a
write already shows it, without a whole sync.

Handlers build rows from the event's fields alone (each contract emits every field of the state
it changes, docs/contracts.md) and set the state the event says. Applied in chain order, they
end where the chain is however often an event is delivered: the sync applies every event again,
those a receipt already applied too, so an event mirrored from a receipt ahead of an earlier
one is put back in order by the next run, and a reorg's rewind re-applies the new branch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from web3.types import TxReceipt

from chain.cursor import EventCursor
from chain.errors import ChainUnavailable
from chain.events import ChainEvent
from portal.core import chain as portal_chain
from portal.core.models import ChainEventRecord, ChainSyncState

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[ChainEvent]], None]
Table = Mapping[tuple[str, str], Handler]

_handlers: dict[tuple[str, str], Handler] = {}


def each(handle: Callable[[ChainEvent], None]) -> Handler:
    """A handler of one event at a time, as a table entry.

    A table's handler is given a run of consecutive events of one name, in chain order,
    so that one that mirrors many alike (nodes registered) may write them in one query.
    """

    def handler(events: Sequence[ChainEvent]) -> None:
        for event in events:
            handle(event)

    handler.__name__ = handle.__name__
    handler.__module__ = handle.__module__
    return handler


def register(table: Table) -> None:
    """Add an app's handlers; one event of one contract has one handler."""
    for key, handler in table.items():
        found = _handlers.setdefault(key, handler)
        if found is not handler:
            contract, name = key
            raise ImproperlyConfigured(
                f"{name} of {contract} has two handlers: {found.__module__}.{found.__name__} "
                f"and {handler.__module__}.{handler.__name__}"
            )


def handled() -> set[tuple[str, str]]:
    """The (contract, event name) pairs some handler mirrors."""
    return set(_handlers)


class _DatabaseStore:
    def __init__(self, state: ChainSyncState) -> None:
        self.state = state

    def load(self) -> tuple[int | None, str | None]:
        return self.state.last_block, self.state.last_block_hash or None

    def save(self, block: int, block_hash: str) -> None:
        self.state.last_block = block
        self.state.last_block_hash = block_hash


@dataclass(frozen=True)
class SyncResult:
    processed: int
    head: int | None
    rewound: bool = False
    error: str = ""


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _announce(events: list[dict[str, object]]) -> None:
    """Tell open pages what changed; a lost announcement only delays a refresh."""
    if not events:
        return
    try:
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        from portal.core.consumers import SYNC_GROUP

        layer = get_channel_layer()
        if layer is None:
            return
        group_send = async_to_sync(layer.group_send)
        message: dict[str, Any] = {"type": "chain.event", "event": {"events": events}}

        def send(group: str, body: dict[str, Any]) -> None:
            try:
                group_send(group, body)
            except Exception:
                log.warning("could not announce chain events", exc_info=True)

        if _loop_running():
            # async_to_sync refuses a thread whose event loop runs (a sync caller inside an
            # async program, as Playwright's sync API is): send from a thread of its own.
            sender = threading.Thread(target=send, args=(SYNC_GROUP, message), daemon=True)
            sender.start()
            sender.join(timeout=5)
        else:
            send(SYNC_GROUP, message)
    except Exception:
        log.warning("could not announce chain events", exc_info=True)


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def mirror(contract: str, events: Sequence[ChainEvent]) -> None:
    """Record ``contract``'s ``events`` once each and apply them in order, in one transaction.

    A seen event is applied again: its handler sets what the event says, and the events
    after it, applied after it, set what they say.
    """
    if not events:
        return
    with transaction.atomic():
        ChainEventRecord.objects.bulk_create(
            [
                ChainEventRecord(
                    tx_hash=e.tx_hash,
                    log_index=e.log_index,
                    block_number=e.block_number,
                    block_hash=e.block_hash,
                    name=e.name,
                    args=_jsonable(e.args),
                )
                for e in events
            ],
            ignore_conflicts=True,
        )
        for name, run in groupby(events, key=lambda e: e.name):
            handler = _handlers.get((contract, name))
            if handler is not None:
                handler(list(run))
        seen = [{"name": e.name, "block": e.block_number} for e in events]
        transaction.on_commit(lambda: _announce(seen))


def mirror_receipt(receipt: TxReceipt) -> list[ChainEvent]:
    """Apply a relayed transaction's events at once, through the same handlers as the sync."""
    applied: list[ChainEvent] = []
    with transaction.atomic():
        for deployment, wrapper in portal_chain.followed_contracts():
            events = wrapper.decode_events(receipt)
            mirror(deployment.name, events)
            applied += events
    return applied


def _sync_contract(
    name: str, start_block: int, address: str, abi: Iterable[object], until: int | None
) -> tuple[int, int, bool, int | None]:
    """Poll one contract's cursor up to the head (or ``until``); one transaction per batch.

    Returns (events processed, head, rewound, last block mirrored).
    """
    ChainSyncState.objects.get_or_create(name=name)
    total, rewound = 0, False
    while True:
        with transaction.atomic():
            state = ChainSyncState.objects.select_for_update().get(name=name)
            cursor = EventCursor(
                portal_chain.client(),
                [(address, abi)],  # type: ignore[list-item]
                _DatabaseStore(state),
                start_block=start_block,
            )
            batch: list[ChainEvent] = []
            result = cursor.poll(batch.append, until=until)
            mirror(name, batch)
            state.head_block = result.head
            state.events_processed += result.processed
            state.reorgs += int(result.rewound)
            state.last_error = ""
            state.last_run_at = state.last_success_at = timezone.now()
            state.save()
        total += result.processed
        rewound = rewound or result.rewound
        end = result.head if until is None else min(result.head, until)
        if result.to_block >= end:
            return total, result.head, rewound, state.last_block


def chain_sync_run() -> SyncResult:
    """Mirror every followed contract's new events up to the chain head; safe to run
    concurrently (each contract's cursor row is locked while its batch is applied).

    The registry goes first and the others stop at the block it reached, so a dataset
    event never arrives before the membership and nodes it refers to.
    """
    names: list[str] = []
    try:
        followed = portal_chain.followed_contracts()
        names = [d.name for d, _ in followed]
        total, rewound = 0, False
        head: int | None = None
        until: int | None = None
        for deployment, wrapper in followed:
            processed, head, was_rewound, reached = _sync_contract(
                deployment.name, deployment.block_number, wrapper.address, wrapper.abi, until
            )
            total += processed
            rewound = rewound or was_rewound
            if until is None:
                until = reached if reached is not None else deployment.block_number - 1
        return SyncResult(processed=total, head=head, rewound=rewound)
    except (ChainUnavailable, portal_chain.NotDeployed) as exc:
        log.warning("chain sync failed: %s", exc)
        ChainSyncState.objects.filter(name__in=names or [portal_chain.REGISTRY]).update(
            last_error=str(exc), last_run_at=timezone.now()
        )
        return SyncResult(processed=0, head=None, error=str(exc))
