"""What every typed contract wrapper shares: the bound contract, calls, sends, events."""

from __future__ import annotations

from typing import Any, ClassVar

from eth_utils import to_checksum_address
from web3.contract import Contract
from web3.types import TxReceipt

from chain import actions
from chain.artifacts import load_artifact
from chain.client import ChainClient
from chain.events import ChainEvent, EventDecoder

# NoncesKeyed packs the key above a key's 64-bit sequence.
_SEQUENCE = (1 << 64) - 1


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

    def nonce(self, account: str, key: int = 0) -> int:
        """The account's next EIP-712 nonce on this contract: in its one sequence, or in key
        ``key``'s (NoncesKeyed), without the key the contract packs above it."""
        if not key:
            return int(self._call("nonces", to_checksum_address(account)))
        keyed = self.contract.get_function_by_signature("nonces(address,uint192)")
        return int(self.client.call(keyed(to_checksum_address(account), key))) & _SEQUENCE

    def nonce_for(self, action: str, signer: str, message: dict[str, Any]) -> int:
        """``signer``'s next nonce for ``action`` over ``message``, under the key it declares."""
        return self.nonce(signer, self._declared(action).nonce_key_of(message))

    def typed(self, action: str, signer: str, message: dict[str, Any]) -> actions.TypedData:
        """Typed data for a declared ``action`` on this contract, in the domain the contract
        publishes, with ``signer``'s current nonce added where the action has one."""
        if self._declared(action).has_nonce:
            message = {**message, "nonce": self.nonce_for(action, signer, message)}
        return actions.typed_data(self.client, action, self.address, message)

    def send_signed(
        self,
        action: str,
        message: dict[str, Any],
        signature: bytes | str,
        *,
        signer: str,
        sender_key: str | None = None,
        unsigned: dict[str, Any] | None = None,
    ) -> TxReceipt:
        """Relay ``signer``'s signature over ``message`` (the nonce left out or not) to the
        contract function the declared ``action`` names, by ``sender_key`` (None: the
        client's relayer); ``unsigned`` holds the arguments the action declares unsigned.
        Simulated first: a refusal raises the contract's error and spends no gas."""
        declared = self._declared(action)
        if not declared.on_chain:
            raise ValueError(f"{action} is checked by the portal, never sent to a contract")
        arguments = declared.relay_arguments(message, signer, unsigned or {})
        function = self.contract.functions[declared.relayed_by]
        return self.client.transact(
            function(*arguments, as_signature(signature)), sender_key=sender_key
        )

    def _declared(self, action: str) -> actions.SignedAction:
        declared = actions.action(action)
        if declared.contract != self.NAME:
            raise ValueError(f"{action} is signed for {declared.contract}, not {self.NAME}")
        return declared

    def decode_events(self, receipt: TxReceipt) -> list[ChainEvent]:
        """This contract's events in ``receipt``, in log order."""
        logs = [log for log in receipt["logs"] if log["address"] == self.address]
        return self._decoder.decode_all(logs)
