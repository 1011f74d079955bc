"""Typed wrapper over the DatasetRegistry contract: manifest anchors, key grants, withdrawal."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from eth_utils import to_checksum_address
from web3.types import TxReceipt

from chain.actions import TypedData
from chain.client import ChainClient
from chain.wrapper import ContractWrapper, as_bytes32

ZERO_HASH = b"\x00" * 32


@dataclass(frozen=True)
class Dataset:
    id: bytes
    owner_id: int  # 0: never anchored
    latest_version: int
    latest_manifest: bytes
    withdrawn: bool

    @property
    def exists(self) -> bool:
        return self.latest_version != 0


@dataclass(frozen=True)
class Grant:
    dataset_id: bytes
    node_id: bytes
    grant_hash: bytes  # the last one recorded, kept after a revocation
    active: bool


def dataset_id_of(member_id: int, dataset_uuid: uuid.UUID) -> bytes:
    """The on-chain id of a member's dataset: its member id in the high 128 bits, the uuid in
    the low 128 bits (the contract's ``datasetIdOf``; it refuses an anchor under another's)."""
    if not 0 < member_id < 1 << 128:
        raise ValueError(f"member id {member_id} does not fit a dataset id")
    return ((member_id << 128) | dataset_uuid.int).to_bytes(32, "big")


def dataset_id_parts(dataset_id: bytes | str) -> tuple[int, uuid.UUID]:
    """The owner's member id and the uuid an on-chain dataset id is made of."""
    raw = int.from_bytes(as_bytes32(dataset_id), "big")
    return raw >> 128, uuid.UUID(int=raw & ((1 << 128) - 1))


class DatasetRegistry(ContractWrapper):
    """Views return dataclasses; actions send a transaction and return its receipt.

    Direct actions are sent by ``sender_key``; signed ones are relayed with ``send_signed``
    (``sender_key`` None: the client's relayer) with the signature of ``signer`` over the
    matching ``*_typed`` data. Anchors and grants to the owner's own nodes take the owner's
    governance key or one of its DATA delegates; a grant to another member's node
    (``DatasetRegistryCrossMemberGrant`` from a delegate), a revocation and a withdrawal take
    the governance key.
    """

    NAME = "DatasetRegistry"

    @classmethod
    def deploy(
        cls, client: ChainClient, *, registry_address: str, sender_key: str | None = None
    ) -> DatasetRegistry:
        """Deploy against the ConsortiumRegistry at ``registry_address``."""
        address = client.deploy(
            cls.NAME, to_checksum_address(registry_address), sender_key=sender_key, gas=3_000_000
        )
        return cls(client, address)

    # views

    def registry_address(self) -> str:
        """The ConsortiumRegistry this contract reads membership from."""
        return to_checksum_address(self._call("registry"))

    def dataset(self, dataset_id: bytes | str) -> Dataset:
        owner_id, version, manifest, withdrawn = self._call("dataset", as_bytes32(dataset_id))
        return Dataset(
            as_bytes32(dataset_id), int(owner_id), int(version), bytes(manifest), withdrawn
        )

    def manifest_of(self, dataset_id: bytes | str, version: int) -> bytes | None:
        """The manifest hash anchored as ``version``, or None."""
        manifest = bytes(self._call("manifestOf", as_bytes32(dataset_id), version))
        return None if manifest == ZERO_HASH else manifest

    def grant_of(self, dataset_id: bytes | str, node_id: bytes | str) -> Grant:
        grant_hash, active = self._call("grantOf", as_bytes32(dataset_id), as_bytes32(node_id))
        return Grant(as_bytes32(dataset_id), as_bytes32(node_id), bytes(grant_hash), active)

    def version_of(self, dataset_id: bytes | str, manifest_hash: bytes | str) -> int:
        """The version of the dataset ``manifest_hash`` was anchored as; 0 if never."""
        return int(self._call("versionOf", as_bytes32(dataset_id), as_bytes32(manifest_hash)))

    # typed data to sign (domain and the signer's current nonce read from the chain)

    def anchor_manifest_typed(
        self,
        *,
        signer: str,
        dataset_id: bytes | str,
        version: int,
        manifest_hash: bytes | str,
        previous: bytes | str = ZERO_HASH,
    ) -> TypedData:
        msg = {
            "datasetId": dataset_id,
            "version": version,
            "manifestHash": manifest_hash,
            "previous": previous,
        }
        return self.typed("AnchorManifest", signer, msg)

    def record_grant_typed(
        self, *, signer: str, dataset_id: bytes | str, node_id: bytes | str, grant_hash: bytes | str
    ) -> TypedData:
        msg = {"datasetId": dataset_id, "nodeId": node_id, "grantHash": grant_hash}
        return self.typed("RecordGrant", signer, msg)

    def revoke_grant_typed(
        self, *, signer: str, dataset_id: bytes | str, node_id: bytes | str
    ) -> TypedData:
        return self.typed("RevokeGrant", signer, {"datasetId": dataset_id, "nodeId": node_id})

    def withdraw_typed(self, *, signer: str, dataset_id: bytes | str) -> TypedData:
        return self.typed("WithdrawDataset", signer, {"datasetId": dataset_id})

    # actions

    def anchor_manifest(
        self,
        *,
        dataset_id: bytes | str,
        version: int,
        manifest_hash: bytes | str,
        previous: bytes | str = ZERO_HASH,
        sender_key: str | None = None,
    ) -> TxReceipt:
        args = (
            as_bytes32(dataset_id),
            int(version),
            as_bytes32(manifest_hash),
            as_bytes32(previous),
        )
        return self._send("anchorManifest", *args, sender_key=sender_key, gas=300_000)

    def record_grant(
        self,
        *,
        dataset_id: bytes | str,
        node_id: bytes | str,
        grant_hash: bytes | str,
        sender_key: str | None = None,
    ) -> TxReceipt:
        args = (as_bytes32(dataset_id), as_bytes32(node_id), as_bytes32(grant_hash))
        return self._send("recordGrant", *args, sender_key=sender_key, gas=200_000)

    def revoke_grant(
        self, *, dataset_id: bytes | str, node_id: bytes | str, sender_key: str | None = None
    ) -> TxReceipt:
        args = (as_bytes32(dataset_id), as_bytes32(node_id))
        return self._send("revokeGrant", *args, sender_key=sender_key, gas=100_000)

    def withdraw(self, *, dataset_id: bytes | str, sender_key: str | None = None) -> TxReceipt:
        return self._send("withdraw", as_bytes32(dataset_id), sender_key=sender_key, gas=100_000)

    # events
