"""Decoding contract logs into plain ``ChainEvent`` records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import Web3
from web3._utils.events import get_event_data
from web3.types import LogReceipt


@dataclass(frozen=True)
class ChainEvent:
    """One decoded log. ``args`` holds web3's decoded values (bytes stay bytes)."""

    name: str
    args: dict[str, Any]
    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str
    address: str = field(default="")

    @property
    def key(self) -> tuple[int, int]:
        """Position on the chain; handlers may use (block_hash, log_index) to stay idempotent."""
        return (self.block_number, self.log_index)


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


class EventDecoder:
    """Decodes the logs of contracts whose ABIs it was given, keyed by topic0."""

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]]) -> None:
        self._codec = Web3().codec
        self._events: dict[bytes, dict[str, Any]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") == "event" and not item.get("anonymous"):
                    self._events[bytes(event_abi_to_log_topic(dict(item)))] = dict(item)  # type: ignore[arg-type]

    def decode(self, log: LogReceipt | Mapping[str, Any]) -> ChainEvent | None:
        """The event in ``log``, or None when its topic is not in the ABIs."""
        topics = log["topics"]
        if not topics:
            return None
        abi = self._events.get(bytes(topics[0]))
        if abi is None:
            return None
        data = get_event_data(self._codec, abi, log)  # type: ignore[arg-type]
        return ChainEvent(
            name=str(data["event"]),
            args=dict(data["args"]),
            block_number=int(log["blockNumber"]),
            block_hash=_hex(log["blockHash"]),
            log_index=int(log["logIndex"]),
            tx_hash=_hex(log["transactionHash"]),
            address=to_checksum_address(log["address"]),
        )

    def decode_all(self, logs: Iterable[LogReceipt | Mapping[str, Any]]) -> list[ChainEvent]:
        events = [e for e in (self.decode(log) for log in logs) if e is not None]
        return sorted(events, key=lambda e: e.key)
