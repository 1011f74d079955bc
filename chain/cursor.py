"""Delivers contract events in chain order, resuming from a stored block and surviving reorgs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eth_utils import to_checksum_address

from chain.client import ChainClient
from chain.events import ChainEvent, EventDecoder


class CursorStore(Protocol):
    """Where the cursor keeps the last block it fully processed (a DB row, a file, ...)."""

    def load(self) -> tuple[int | None, str | None]: ...

    def save(self, block: int, block_hash: str) -> None: ...


class MemoryCursorStore:
    """A CursorStore in memory, for tests and one-shot scripts."""

    def __init__(self, block: int | None = None, block_hash: str | None = None) -> None:
        self.block = block
        self.block_hash = block_hash

    def load(self) -> tuple[int | None, str | None]:
        return self.block, self.block_hash

    def save(self, block: int, block_hash: str) -> None:
        self.block, self.block_hash = block, block_hash


@dataclass(frozen=True)
class PollResult:
    processed: int
    head: int
    from_block: int
    to_block: int  # from_block - 1 when there was nothing new
    rewound: bool

    @property
    def caught_up(self) -> bool:
        return self.to_block >= self.head


class EventCursor:
    """Polls ``eth_getLogs`` over short ranges and hands each event to an idempotent handler."""

    def __init__(
        self,
        client: ChainClient,
        contracts: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
        store: CursorStore,
        *,
        start_block: int = 0,
        batch_blocks: int = 500,
        reorg_depth: int = 64,
    ) -> None:
        if batch_blocks < 1 or reorg_depth < 1:
            raise ValueError("batch_blocks and reorg_depth must be positive")
        self.client = client
        self.addresses = [to_checksum_address(address) for address, _ in contracts]
        self.decoder = EventDecoder([abi for _, abi in contracts])
        self.store = store
        self.start_block = start_block
        self.batch_blocks = batch_blocks
        self.reorg_depth = reorg_depth

    def poll(self, handle: Callable[[ChainEvent], None], *, until: int | None = None) -> PollResult:
        """Process one batch of at most ``batch_blocks`` blocks, none past ``until`` (the
        block another contract's cursor reached, when events here refer to its state);
        save only once all handled."""
        last, last_hash = self.store.load()
        head = self.client.head()
        rewound = False
        if last is not None and (last > head or self.client.block_hash(last) != last_hash):
            # Only the last hash is stored, so rewind a fixed depth (deeper than any reorg a
            # PoA consortium chain sees); handlers are idempotent, re-delivery is harmless.
            rewound = True
            last = min(last, head) - self.reorg_depth
            if last < self.start_block:
                last = None
        from_block = self.start_block if last is None else last + 1
        end = head if until is None else min(head, until)
        if from_block > end:
            return PollResult(0, head, from_block, from_block - 1, rewound)
        to_block = min(end, from_block + self.batch_blocks - 1)
        to_hash = self.client.block_hash(to_block)
        events = self.decoder.decode_all(self.client.get_logs(self.addresses, from_block, to_block))
        for event in events:
            handle(event)
        if to_hash is None:  # the chain shrank under us: the next poll rewinds
            return PollResult(len(events), head, from_block, to_block, rewound)
        self.store.save(to_block, to_hash)
        return PollResult(len(events), head, from_block, to_block, rewound)

    def catch_up(
        self, handle: Callable[[ChainEvent], None], *, max_batches: int = 1000
    ) -> list[PollResult]:
        """Poll until the stored block reaches the head seen by the last poll."""
        results: list[PollResult] = []
        for _ in range(max_batches):
            result = self.poll(handle)
            results.append(result)
            if result.caught_up:
                break
        return results
