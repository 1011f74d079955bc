"""Every signed action, declared once: its EIP-712 type, the contract that checks it, who signs.

The domain is not copied here: each contract publishes its own through ERC-5267
``eip712Domain()`` (OpenZeppelin's EIP712), and ``typed_data`` reads it from the chain once
per (chain id, contract address). A wallet, the CLI and the portal therefore sign exactly
what the contract hashes, and a contract that changes its domain changes it everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from threading import Lock
from typing import Any
from weakref import WeakKeyDictionary

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from chain.client import ChainClient

TypedData = dict[str, Any]

CONSORTIUM_REGISTRY = "ConsortiumRegistry"
DATASET_REGISTRY = "DatasetRegistry"
TRAINING_ROUNDS = "TrainingRounds"  # declared ahead of its contract (DESIGN: rounds on chain)


class Signer(StrEnum):
    """Whose key signs an action (the contract enforces it; this says whom to ask)."""

    APPLICANT = "the applicant's governance key"
    HOSPITAL = "an active hospital member's governance key"
    MEMBER = "the member's governance key"
    PROPOSER = "the member's own governance key, or an active hospital member's"
    DATA_STEWARD = "the owner's governance key or one of its Data delegates"
    NODE = "the training node's registered signer key"
    ROUND_NODE = "the key of a training node taking part in the round"


@dataclass(frozen=True)
class SignedAction:
    name: str  # the EIP-712 primary type, as in the contract's typehash
    contract: str  # the contract whose domain it is signed in
    signer: Signer
    fields: tuple[tuple[str, str], ...]  # (name, Solidity type), in typehash order
    on_chain: bool = True  # False: checked by the portal only, never sent to the contract
    function: str = ""  # the contract's relayed form; "" is the name's, as in voteBySig
    signer_field: str = ""  # a field that names the signer (Vote's voter), else passed after
    # The fields the signer's nonce is keyed by (NoncesKeyed); () is the signer's one sequence.
    nonce_key: tuple[str, ...] = ()
    # Arguments the relayed form takes after the signed fields that this signer does not
    # sign (SponsorAdmission carries the applicant's own signature).
    unsigned: tuple[tuple[str, str], ...] = ()

    @property
    def has_nonce(self) -> bool:
        return any(field == "nonce" for field, _ in self.fields)

    def nonce_key_of(self, message: dict[str, Any]) -> int:
        """The key the contract spends this action's nonce under (MemberSigned's
        ``_nonceKey``): 0 for the signer's one sequence, else the low 192 bits of the
        keccak256 of the keying fields' ``abi.encode``."""
        if not self.nonce_key:
            return 0
        kinds = dict(self.fields)
        encoded = abi_encode(
            [kinds[field] for field in self.nonce_key],
            [_abi_value(kinds[field], message[field]) for field in self.nonce_key],
        )
        return int.from_bytes(keccak(encoded)[-24:], "big")

    @property
    def relayed_by(self) -> str:
        """The contract function that takes the signed fields, the signer and the signature."""
        return self.function or self.name[0].lower() + self.name[1:] + "BySig"

    def relay_arguments(
        self, message: dict[str, Any], signer: str, unsigned: dict[str, Any] | None = None
    ) -> list[Any]:
        """The relayed function's arguments before the signature: the signed fields in
        typehash order (the nonce is the contract's own), the unsigned ones, then the
        signer unless a field names it."""
        values = [
            _abi_value(kind, message[field]) for field, kind in self.fields if field != "nonce"
        ]
        extra = unsigned or {}
        values += [_abi_value(kind, extra[field]) for field, kind in self.unsigned]
        return values if self.signer_field else [*values, to_checksum_address(signer)]

    @property
    def encode_type(self) -> str:
        """``Name(type field,...)``: the string the contract's typehash is keccak256 of."""
        return f"{self.name}({','.join(f'{kind} {field}' for field, kind in self.fields)})"


def _action(
    name: str,
    contract: str,
    signer: Signer,
    *fields: tuple[str, str],
    on_chain: bool = True,
    function: str = "",
    signer_field: str = "",
    nonce_key: tuple[str, ...] = (),
    unsigned: tuple[tuple[str, str], ...] = (),
) -> SignedAction:
    return SignedAction(
        name, contract, signer, fields, on_chain, function, signer_field, nonce_key, unsigned
    )


def _abi_value(kind: str, value: Any) -> Any:
    """A typed-data value as web3 encodes it for the contract's ABI: raw bytes for bytesN."""
    value = _json_value(kind, value)
    return bytes.fromhex(value[2:]) if kind.startswith("bytes") else value


_NONCE = ("nonce", "uint256")
# A grant and a revocation of one dataset to one node share their nonces (DatasetRegistry's
# grantNonceKey): grants signed together land or fail each on its own.
_GRANT_PAIR = ("datasetId", "nodeId")

ACTIONS: dict[str, SignedAction] = {
    a.name: a
    for a in (
        _action(
            "Application",
            CONSORTIUM_REGISTRY,
            Signer.APPLICANT,
            ("applicant", "address"),
            ("role", "uint8"),
            ("dataKey", "bytes32"),
            ("nameHash", "bytes32"),
            _NONCE,
        ),
        _action(
            "SponsorAdmission",
            CONSORTIUM_REGISTRY,
            Signer.HOSPITAL,
            ("applicant", "address"),
            ("role", "uint8"),
            ("dataKey", "bytes32"),
            ("nameHash", "bytes32"),
            _NONCE,
            unsigned=(("applicantSignature", "bytes"),),
        ),
        _action(
            "Vote",
            CONSORTIUM_REGISTRY,
            Signer.HOSPITAL,
            ("proposalId", "uint256"),
            ("support", "bool"),
            ("voter", "address"),
            _NONCE,
            signer_field="voter",
        ),
        _action(
            "SetDelegate",
            CONSORTIUM_REGISTRY,
            Signer.MEMBER,
            ("delegate", "address"),
            ("scope", "uint8"),
            ("enabled", "bool"),
            _NONCE,
        ),
        _action(
            "RegisterNode",
            CONSORTIUM_REGISTRY,
            Signer.MEMBER,
            ("nodeId", "bytes32"),
            ("signer", "address"),
            ("dataKey", "bytes32"),
            _NONCE,
        ),
        _action("RevokeNode", CONSORTIUM_REGISTRY, Signer.MEMBER, ("nodeId", "bytes32"), _NONCE),
        _action(
            "RotateNodeKey",
            CONSORTIUM_REGISTRY,
            Signer.MEMBER,
            ("nodeId", "bytes32"),
            ("dataKey", "bytes32"),
            _NONCE,
        ),
        _action(
            "ProposeRemoval", CONSORTIUM_REGISTRY, Signer.HOSPITAL, ("memberId", "uint256"), _NONCE
        ),
        _action(
            "ProposeRotation",
            CONSORTIUM_REGISTRY,
            Signer.PROPOSER,
            ("memberId", "uint256"),
            ("newGovernance", "address"),
            _NONCE,
        ),
        # A node proves to the portal that it holds its registered signer key.
        _action(
            "NodeCheckIn",
            CONSORTIUM_REGISTRY,
            Signer.NODE,
            ("nodeId", "bytes32"),
            ("challenge", "bytes32"),
            on_chain=False,
        ),
        _action(
            "AnchorManifest",
            DATASET_REGISTRY,
            Signer.DATA_STEWARD,
            ("datasetId", "bytes32"),
            ("version", "uint32"),
            ("manifestHash", "bytes32"),
            ("previous", "bytes32"),
            _NONCE,
        ),
        _action(
            "RecordGrant",
            DATASET_REGISTRY,
            Signer.DATA_STEWARD,
            ("datasetId", "bytes32"),
            ("nodeId", "bytes32"),
            ("grantHash", "bytes32"),
            _NONCE,
            nonce_key=_GRANT_PAIR,
        ),
        _action(
            "RevokeGrant",
            DATASET_REGISTRY,
            Signer.MEMBER,
            ("datasetId", "bytes32"),
            ("nodeId", "bytes32"),
            _NONCE,
            nonce_key=_GRANT_PAIR,
        ),
        _action(
            "WithdrawDataset",
            DATASET_REGISTRY,
            Signer.MEMBER,
            ("datasetId", "bytes32"),
            _NONCE,
            function="withdrawBySig",
        ),
        # A node submits its model update to a training round. No contract checks it yet:
        # the portal refuses to build or relay it until TrainingRounds is deployed.
        _action(
            "Update",
            TRAINING_ROUNDS,
            Signer.ROUND_NODE,
            ("roundId", "uint256"),
            ("memberId", "uint256"),
            ("nodeId", "bytes32"),
            ("updateHash", "bytes32"),
            ("sampleCount", "uint256"),
            _NONCE,
        ),
    )
}

# ERC-5267: which domain fields are used, bit by bit, and their EIP-712 types.
_DOMAIN_FIELDS = (
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("salt", "bytes32"),
)
_ERC5267_ABI = [
    {
        "type": "function",
        "name": "eip712Domain",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [
            {"name": "fields", "type": "bytes1"},
            {"name": "name", "type": "string"},
            {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"},
            {"name": "verifyingContract", "type": "address"},
            {"name": "salt", "type": "bytes32"},
            {"name": "extensions", "type": "uint256[]"},
        ],
    }
]

# Per client, then per (chain id, address).
_DOMAINS: WeakKeyDictionary[ChainClient, dict[tuple[int, str], dict[str, Any]]] = (
    WeakKeyDictionary()
)
_DOMAINS_LOCK = Lock()


def action(name: str) -> SignedAction:
    try:
        return ACTIONS[name]
    except KeyError:
        raise KeyError(f"no signed action {name!r}; declared: {sorted(ACTIONS)}") from None


def domain_of(client: ChainClient, address: str) -> dict[str, Any]:
    """The EIP-712 domain the contract at ``address`` hashes with, read by ERC-5267.

    Cached per (chain id, address) for the client's life: a deployed contract's domain never
    changes. Not on an in-process eth-tester chain, which costs no round trip and which tests
    rewind to snapshots, putting another contract where one was.
    """
    address = to_checksum_address(address)
    key = (client.chain_id, address)
    with _DOMAINS_LOCK:
        cached = None if client.tester else _DOMAINS.setdefault(client, {}).get(key)
    if cached is not None:
        return dict(cached)
    contract = client.w3.eth.contract(address=address, abi=_ERC5267_ABI)
    fields, name, version, chain_id, verifying, salt, extensions = client.call(
        contract.functions.eip712Domain()
    )
    if extensions:
        raise ValueError(f"the contract at {address} uses EIP-712 extensions {extensions}")
    values = {
        "name": name,
        "version": version,
        "chainId": int(chain_id),
        "verifyingContract": to_checksum_address(verifying),
        "salt": "0x" + bytes(salt).hex(),
    }
    bits = int.from_bytes(bytes(fields), "big")
    domain = {n: values[n] for i, (n, _) in enumerate(_DOMAIN_FIELDS) if bits >> i & 1}
    with _DOMAINS_LOCK:
        _DOMAINS.setdefault(client, {})[key] = domain
    return dict(domain)


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


def typed_data_in(domain: dict[str, Any], name: str, message: dict[str, Any]) -> TypedData:
    """The eth_signTypedData_v4 dict for action ``name`` in an already known ``domain``."""
    declared = action(name)
    if set(message) != {field for field, _ in declared.fields}:
        raise ValueError(
            f"{name} fields are {[f for f, _ in declared.fields]}, got {sorted(message)}"
        )
    domain_type = [{"name": n, "type": t} for n, t in _DOMAIN_FIELDS if n in domain]
    return {
        "types": {
            "EIP712Domain": domain_type,
            name: [{"name": f, "type": t} for f, t in declared.fields],
        },
        "primaryType": name,
        "domain": dict(domain),
        "message": {f: _json_value(t, message[f]) for f, t in declared.fields},
    }


def typed_data(client: ChainClient, name: str, address: str, message: dict[str, Any]) -> TypedData:
    """The full typed data for action ``name`` sent to the contract at ``address``, its
    domain read from the chain (``message`` includes the signer's nonce where the type has one)."""
    return typed_data_in(domain_of(client, address), name, message)
