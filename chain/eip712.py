"""EIP-712 typed data for the contracts' signed actions, in the eth_signTypedData_v4 JSON shape.

The actions themselves (type, contract, signer) are declared once, in ``chain.actions``;
``chain.actions.typed_data`` builds them with the domain each contract publishes
(ERC-5267). ``typed_for`` takes the domain's chain id and contract from its caller and
names it from the constants here, for any declared action: for callers that sign
without asking the chain for the domain (the node agent, the bench, tests, which check
the constants against ``eip712Domain()``). The portal's services build typed data
through ``portal.core.relay``.
"""

from __future__ import annotations

import re
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address

from chain.actions import ACTIONS, CONSORTIUM_REGISTRY, DATASET_REGISTRY, TypedData, typed_data_in
from chain.actions import action as action_of

DOMAIN_NAME = "MedChain Consortium"  # ConsortiumRegistry
DATASETS_DOMAIN_NAME = "MedChain Datasets"  # DatasetRegistry
DOMAIN_VERSION = "1"
DOMAIN_NAMES = {CONSORTIUM_REGISTRY: DOMAIN_NAME, DATASET_REGISTRY: DATASETS_DOMAIN_NAME}


TYPES: dict[str, list[tuple[str, str]]] = {name: list(a.fields) for name, a in ACTIONS.items()}


def domain(chain_id: int, verifying_contract: str, name: str = DOMAIN_NAME) -> dict[str, Any]:
    return {
        "name": name,
        "version": DOMAIN_VERSION,
        "chainId": int(chain_id),
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def typed_data(
    primary_type: str,
    chain_id: int,
    verifying_contract: str,
    message: dict[str, Any],
    *,
    domain_name: str = DOMAIN_NAME,
) -> TypedData:
    """The full typed-data dict for ``primary_type`` (a declared action) and its message fields."""
    return typed_data_in(domain(chain_id, verifying_contract, domain_name), primary_type, message)


def typed_for(action: str, chain_id: int, contract: str, **fields: Any) -> TypedData:
    """The typed data of a declared ``action`` from its fields in snake_case (``data_key``
    for ``dataKey``, ``nonce`` where it has one), in the domain of the contract it is
    declared for, named from the constants here."""
    declared = action_of(action)
    names = {_snake(name): name for name, _ in declared.fields}
    if set(fields) != set(names):
        raise TypeError(f"{action} takes {sorted(names)}, got {sorted(fields)}")
    message = {names[key]: value for key, value in fields.items()}
    name = DOMAIN_NAMES[declared.contract]
    return typed_data(action, chain_id, contract, message, domain_name=name)


def _snake(name: str) -> str:
    return re.sub("([A-Z])", r"_\1", name).lower()


def sign_typed(private_key: str | bytes, typed: TypedData) -> bytes:
    """65-byte r || s || v (v = 27/28) signature, as a wallet's eth_signTypedData_v4 returns."""
    signed = Account.sign_message(encode_typed_data(full_message=typed), private_key)
    return bytes(signed.signature)


def recover_typed(typed: TypedData, signature: bytes | str) -> str:
    """The checksummed address that signed ``typed``."""
    sig = bytes.fromhex(signature[2:]) if isinstance(signature, str) else bytes(signature)
    return str(Account.recover_message(encode_typed_data(full_message=typed), signature=sig))
