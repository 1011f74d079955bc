"""Personas, ids and helpers for the DatasetRegistry tests (on top of registry_helpers)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from registry_helpers import CITY, MARY, NORTH, Persona, persona, sign

from chain import eip712
from chain.consortium_registry import ConsortiumRegistry, Scope
from chain.dataset_registry import ZERO_HASH, DatasetRegistry, dataset_id_of

STEWARD = persona("steward")  # MARY's DATA delegate
CITY_STEWARD = persona("city-steward")  # CITY's DATA delegate
OPERATOR = persona("operator")  # MARY's NODE delegate: may not anchor
MARY_NODE, CITY_NODE = hashlib.sha256(b"node:mary").digest(), hashlib.sha256(b"node:city").digest()
CT_1, CT_2 = uuid.uuid5(uuid.NAMESPACE_URL, "ct-1"), uuid.uuid5(uuid.NAMESPACE_URL, "ct-2")
DATASET, OTHER = dataset_id_of(1, CT_1), dataset_id_of(2, CT_2)  # MARY's, CITY's
ZERO = ZERO_HASH


def manifest(label: str) -> bytes:
    """The SHA-256 of a manifest, as the uploader anchors it."""
    return hashlib.sha256(f"manifest:{label}".encode()).digest()


def grant(label: str) -> bytes:
    return hashlib.sha256(f"grant:{label}".encode()).digest()


def set_up_members(reg: ConsortiumRegistry) -> None:
    """Delegates and one training node each for MARY and CITY."""
    reg.set_delegate(STEWARD.address, Scope.DATA, True, sender_key=MARY.key)
    reg.set_delegate(OPERATOR.address, Scope.NODE, True, sender_key=MARY.key)
    reg.set_delegate(CITY_STEWARD.address, Scope.DATA, True, sender_key=CITY.key)
    reg.register_node(MARY_NODE, persona("mary-node").address, b"\x01" * 32, sender_key=MARY.key)
    reg.register_node(CITY_NODE, persona("city-node").address, b"\x02" * 32, sender_key=CITY.key)


def anchor(
    ds: DatasetRegistry,
    signer: Persona,
    version: int,
    manifest_hash: bytes,
    previous: bytes = ZERO,
    dataset_id: bytes = DATASET,
) -> Any:
    """Relay ``signer``'s signed anchor of one version; returns the receipt."""
    typed = ds.anchor_manifest_typed(
        signer=signer.address,
        dataset_id=dataset_id,
        version=version,
        manifest_hash=manifest_hash,
        previous=previous,
    )
    return ds.send_signed(
        "AnchorManifest",
        {
            "datasetId": dataset_id,
            "version": version,
            "manifestHash": manifest_hash,
            "previous": previous,
        },
        sign(signer, typed),
        signer=signer.address,
    )


def remove_member(reg: ConsortiumRegistry, member_id: int) -> None:
    """Remove a member by a passed removal proposal (MARY or NORTH sponsor; both vote yes)."""
    sponsor = NORTH if member_id == 1 else MARY
    receipt = reg.propose_removal(member_id, sender_key=sponsor.key)
    proposal_id = reg.proposal_id_from(reg.decode_events(receipt))
    reg.vote(proposal_id, True, sender_key=sponsor.key)
    reg.vote(proposal_id, True, sender_key=NORTH.key if sponsor is MARY else CITY.key)
    assert not reg.member(member_id).active


def recovered_after_replay(typed: eip712.TypedData, signature: bytes, nonce: int) -> str:
    """Whom the contract recovers a signature to once the signer's nonce moved on to ``nonce``."""
    return eip712.recover_typed(
        {**typed, "message": {**typed["message"], "nonce": nonce}}, signature
    )
