"""Decoding contract logs into plain ``ChainEvent`` records."""

from __future__ import annotations

import re
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


_STATIC = re.compile(r"^(u?int\d*|address|bool|bytes([1-9]|[12]\d|3[0-2]))$")


@dataclass(frozen=True)
class _Layout:
    """Where an event's arguments are: each indexed one in its own topic, the rest in data."""

    name: str
    indexed: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]


def _layout(abi: Mapping[str, Any]) -> _Layout | None:
    """The event's layout, or None where a type needs web3's general decoder (tuples,
    arrays, a hashed dynamic indexed argument)."""
    inputs = abi.get("inputs", [])
    if not all(_STATIC.match(i["type"]) for i in inputs):
        return None
    return _Layout(
        name=str(abi["name"]),
        indexed=tuple((i["name"], i["type"]) for i in inputs if i.get("indexed")),
        data=tuple((i["name"], i["type"]) for i in inputs if not i.get("indexed")),
    )


class EventDecoder:
    """Decodes the logs of contracts whose ABIs it was given, keyed by topic0.

    Events of static types are decoded with eth-abi directly, as web3's ``get_event_data``
    does but without its per-log normalising passes (most of the mirror's decoding time);
    the tests check both give the same arguments.
    """

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]]) -> None:
        self._codec = Web3().codec
        self._events: dict[bytes, dict[str, Any]] = {}
        self._layouts: dict[bytes, _Layout | None] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") == "event" and not item.get("anonymous"):
                    topic = bytes(event_abi_to_log_topic(dict(item)))  # type: ignore[arg-type]
                    self._events[topic] = dict(item)
                    self._layouts[topic] = _layout(item)

    def _args(
        self, topic: bytes, log: LogReceipt | Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        layout = self._layouts[topic]
        if layout is None:
            data = get_event_data(self._codec, self._events[topic], log)  # type: ignore[arg-type]
            return str(data["event"]), dict(data["args"])
        topics = log["topics"]
        if len(topics) != len(layout.indexed) + 1:
            raise ValueError(f"{layout.name}: {len(topics) - 1} indexed topics in the log")
        args: dict[str, Any] = {}
        for (name, kind), raw in zip(layout.indexed, topics[1:], strict=True):
            args[name] = self._codec.decode([kind], bytes(raw))[0]
        values = self._codec.decode([k for _, k in layout.data], bytes(log["data"]))
        for (name, _), value in zip(layout.data, values, strict=True):
            args[name] = value
        for name, kind in (*layout.indexed, *layout.data):
            if kind == "address":
                args[name] = to_checksum_address(args[name])
        return layout.name, args

    def decode(self, log: LogReceipt | Mapping[str, Any]) -> ChainEvent | None:
        """The event in ``log``, or None when its topic is not in the ABIs."""
        topics = log["topics"]
        if not topics:
            return None
        topic = bytes(topics[0])
        if topic not in self._events:
            return None
        name, args = self._args(topic, log)
        return ChainEvent(
            name=name,
            args=args,
            block_number=int(log["blockNumber"]),
            block_hash=_hex(log["blockHash"]),
            log_index=int(log["logIndex"]),
            tx_hash=_hex(log["transactionHash"]),
            address=to_checksum_address(log["address"]),
        )

    def decode_all(self, logs: Iterable[LogReceipt | Mapping[str, Any]]) -> list[ChainEvent]:
        events = [e for e in (self.decode(log) for log in logs) if e is not None]
        return sorted(events, key=lambda e: e.key)
