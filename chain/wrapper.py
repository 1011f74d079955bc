"""What every typed contract wrapper shares: the bound contract, calls, sends, events."""

from __future__ import annotations

from typing import Any, ClassVar

from eth_utils import to_checksum_address
from web3.contract import Contract
from web3.types import TxReceipt

from chain.artifacts import load_artifact
from chain.client import ChainClient
from chain.events import ChainEvent, EventDecoder


def as_bytes32(value: bytes | str) -> bytes:
    raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


def as_signature(value: bytes | str) -> bytes:
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


class ContractWrapper:
    """Views return dataclasses; actions send a transaction and return its receipt."""

    NAME: ClassVar[str]

    def __init__(self, client: ChainClient, address: str) -> None:
        self.client = client
        self.address = to_checksum_address(address)
        self.abi = load_artifact(self.NAME).abi
        self.contract: Contract = client.contract(self.NAME, self.address)
        self._decoder = EventDecoder([self.abi])

    def _call(self, name: str, *args: Any) -> Any:
        return self.client.call(self.contract.functions[name](*args))

    def _send(self, name: str, *args: Any, sender_key: str | None, gas: int) -> TxReceipt:
        return self.client.transact(
            self.contract.functions[name](*args), sender_key=sender_key, gas=gas
        )

    def nonce(self, account: str) -> int:
        """The account's next EIP-712 nonce on this contract."""
        return int(self._call("nonces", to_checksum_address(account)))

    def decode_events(self, receipt: TxReceipt) -> list[ChainEvent]:
        """This contract's events in ``receipt``, in log order."""
        logs = [log for log in receipt["logs"] if log["address"] == self.address]
        return self._decoder.decode_all(logs)
