"""EIP-712 typed data for the contracts' signed actions, in the eth_signTypedData_v4 JSON shape."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address

DOMAIN_NAME = "MedChain Consortium"  # ConsortiumRegistry
DATASETS_DOMAIN_NAME = "MedChain Datasets"  # DatasetRegistry
DOMAIN_VERSION = "1"

TypedData = dict[str, Any]

_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

TYPES: dict[str, list[tuple[str, str]]] = {
    "Application": [
        ("applicant", "address"),
        ("role", "uint8"),
        ("dataKey", "bytes32"),
        ("nameHash", "bytes32"),
        ("nonce", "uint256"),
    ],
    "SponsorAdmission": [
        ("applicant", "address"),
        ("role", "uint8"),
        ("dataKey", "bytes32"),
        ("nameHash", "bytes32"),
        ("nonce", "uint256"),
    ],
    "Vote": [
        ("proposalId", "uint256"),
        ("support", "bool"),
        ("voter", "address"),
        ("nonce", "uint256"),
    ],
    "SetDelegate": [
        ("delegate", "address"),
        ("scope", "uint8"),
        ("enabled", "bool"),
        ("nonce", "uint256"),
    ],
    "RegisterNode": [
        ("nodeId", "bytes32"),
        ("signer", "address"),
        ("dataKey", "bytes32"),
        ("nonce", "uint256"),
    ],
    "RevokeNode": [("nodeId", "bytes32"), ("nonce", "uint256")],
    "RotateNodeKey": [("nodeId", "bytes32"), ("dataKey", "bytes32"), ("nonce", "uint256")],
    "ProposeRemoval": [("memberId", "uint256"), ("nonce", "uint256")],
    "ProposeRotation": [
        ("memberId", "uint256"),
        ("newGovernance", "address"),
        ("nonce", "uint256"),
    ],
    # Off-chain only: a node proves it holds its registered signer key.
    "NodeCheckIn": [("nodeId", "bytes32"), ("challenge", "bytes32")],
    # DatasetRegistry (domain DATASETS_DOMAIN_NAME)
    "AnchorManifest": [
        ("datasetId", "bytes32"),
        ("version", "uint32"),
        ("manifestHash", "bytes32"),
        ("previous", "bytes32"),
        ("nonce", "uint256"),
    ],
    "RecordGrant": [
        ("datasetId", "bytes32"),
        ("nodeId", "bytes32"),
        ("grantHash", "bytes32"),
        ("nonce", "uint256"),
    ],
    "RevokeGrant": [("datasetId", "bytes32"), ("nodeId", "bytes32"), ("nonce", "uint256")],
    "WithdrawDataset": [("datasetId", "bytes32"), ("nonce", "uint256")],
}


def domain(chain_id: int, verifying_contract: str, name: str = DOMAIN_NAME) -> dict[str, Any]:
    return {
        "name": name,
        "version": DOMAIN_VERSION,
        "chainId": int(chain_id),
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def _json_value(kind: str, value: Any) -> Any:
    """JSON-safe values a browser wallet accepts: 0x-hex for bytes, checksummed addresses."""
    if kind.startswith("bytes"):
        raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
        if kind != "bytes" and len(raw) != int(kind[5:]):
            raise ValueError(f"{kind} needs {kind[5:]} bytes, got {len(raw)}")
        return "0x" + raw.hex()
    if kind == "address":
        return to_checksum_address(value)
    if kind == "bool":
        return bool(value)
    if kind.startswith(("uint", "int")):
        return int(value)
    return value


def typed_data(
    primary_type: str,
    chain_id: int,
    verifying_contract: str,
    message: dict[str, Any],
    *,
    domain_name: str = DOMAIN_NAME,
) -> TypedData:
    """The full typed-data dict for ``primary_type`` (a key of TYPES) and its message fields."""
    fields = TYPES[primary_type]
    if set(message) != {name for name, _ in fields}:
        raise ValueError(
            f"{primary_type} fields are {[n for n, _ in fields]}, got {sorted(message)}"
        )
    return {
        "types": {
            "EIP712Domain": list(_DOMAIN_TYPE),
            primary_type: [{"name": n, "type": t} for n, t in fields],
        },
        "primaryType": primary_type,
        "domain": domain(chain_id, verifying_contract, domain_name),
        "message": {n: _json_value(t, message[n]) for n, t in fields},
    }


def application(
    chain_id: int,
    contract: str,
    *,
    applicant: str,
    role: int,
    data_key: bytes | str,
    name_hash: bytes | str,
    nonce: int,
) -> TypedData:
    msg = {"applicant": applicant, "role": role, "dataKey": data_key, "nameHash": name_hash}
    return typed_data("Application", chain_id, contract, {**msg, "nonce": nonce})


def sponsor_admission(
    chain_id: int,
    contract: str,
    *,
    applicant: str,
    role: int,
    data_key: bytes | str,
    name_hash: bytes | str,
    nonce: int,
) -> TypedData:
    """Signed by the sponsoring hospital's governance key (its nonce) for a relayed sponsorship."""
    msg = {"applicant": applicant, "role": role, "dataKey": data_key, "nameHash": name_hash}
    return typed_data("SponsorAdmission", chain_id, contract, {**msg, "nonce": nonce})


def vote(
    chain_id: int, contract: str, *, proposal_id: int, support: bool, voter: str, nonce: int
) -> TypedData:
    msg = {"proposalId": proposal_id, "support": support, "voter": voter, "nonce": nonce}
    return typed_data("Vote", chain_id, contract, msg)


def propose_removal(chain_id: int, contract: str, *, member_id: int, nonce: int) -> TypedData:
    """Signed by an active hospital member's governance key."""
    return typed_data("ProposeRemoval", chain_id, contract, {"memberId": member_id, "nonce": nonce})


def propose_rotation(
    chain_id: int, contract: str, *, member_id: int, new_governance: str, nonce: int
) -> TypedData:
    """Signed by the member itself or by an active hospital member's governance key."""
    msg = {"memberId": member_id, "newGovernance": new_governance, "nonce": nonce}
    return typed_data("ProposeRotation", chain_id, contract, msg)


def set_delegate(
    chain_id: int, contract: str, *, delegate: str, scope: int, enabled: bool, nonce: int
) -> TypedData:
    msg = {"delegate": delegate, "scope": scope, "enabled": enabled, "nonce": nonce}
    return typed_data("SetDelegate", chain_id, contract, msg)


def register_node(
    chain_id: int,
    contract: str,
    *,
    node_id: bytes | str,
    signer: str,
    data_key: bytes | str,
    nonce: int,
) -> TypedData:
    msg = {"nodeId": node_id, "signer": signer, "dataKey": data_key, "nonce": nonce}
    return typed_data("RegisterNode", chain_id, contract, msg)


def revoke_node(chain_id: int, contract: str, *, node_id: bytes | str, nonce: int) -> TypedData:
    return typed_data("RevokeNode", chain_id, contract, {"nodeId": node_id, "nonce": nonce})


def rotate_node_key(
    chain_id: int, contract: str, *, node_id: bytes | str, data_key: bytes | str, nonce: int
) -> TypedData:
    msg = {"nodeId": node_id, "dataKey": data_key, "nonce": nonce}
    return typed_data("RotateNodeKey", chain_id, contract, msg)


def node_check_in(
    chain_id: int, contract: str, *, node_id: bytes | str, challenge: bytes | str
) -> TypedData:
    msg = {"nodeId": node_id, "challenge": challenge}
    return typed_data("NodeCheckIn", chain_id, contract, msg)


def anchor_manifest(
    chain_id: int,
    contract: str,
    *,
    dataset_id: bytes | str,
    version: int,
    manifest_hash: bytes | str,
    previous: bytes | str,
    nonce: int,
) -> TypedData:
    """Signed by the owner's governance key or a DATA delegate; ``previous`` is 0 for version 1."""
    msg = {
        "datasetId": dataset_id,
        "version": version,
        "manifestHash": manifest_hash,
        "previous": previous,
        "nonce": nonce,
    }
    return typed_data("AnchorManifest", chain_id, contract, msg, domain_name=DATASETS_DOMAIN_NAME)


def record_grant(
    chain_id: int,
    contract: str,
    *,
    dataset_id: bytes | str,
    node_id: bytes | str,
    grant_hash: bytes | str,
    nonce: int,
) -> TypedData:
    msg = {"datasetId": dataset_id, "nodeId": node_id, "grantHash": grant_hash, "nonce": nonce}
    return typed_data("RecordGrant", chain_id, contract, msg, domain_name=DATASETS_DOMAIN_NAME)


def revoke_grant(
    chain_id: int, contract: str, *, dataset_id: bytes | str, node_id: bytes | str, nonce: int
) -> TypedData:
    msg = {"datasetId": dataset_id, "nodeId": node_id, "nonce": nonce}
    return typed_data("RevokeGrant", chain_id, contract, msg, domain_name=DATASETS_DOMAIN_NAME)


def withdraw_dataset(
    chain_id: int, contract: str, *, dataset_id: bytes | str, nonce: int
) -> TypedData:
    msg = {"datasetId": dataset_id, "nonce": nonce}
    return typed_data("WithdrawDataset", chain_id, contract, msg, domain_name=DATASETS_DOMAIN_NAME)


def sign_typed(private_key: str | bytes, typed: TypedData) -> bytes:
    """65-byte r || s || v (v = 27/28) signature, as a wallet's eth_signTypedData_v4 returns."""
    signed = Account.sign_message(encode_typed_data(full_message=typed), private_key)
    return bytes(signed.signature)


def recover_typed(typed: TypedData, signature: bytes | str) -> str:
    """The checksummed address that signed ``typed``."""
    sig = bytes.fromhex(signature[2:]) if isinstance(signature, str) else bytes(signature)
    return str(Account.recover_message(encode_typed_data(full_message=typed), signature=sig))
