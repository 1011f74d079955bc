"""Grants and revocations spend nonces keyed by their (dataset, node) pair (NoncesKeyed,
issue 12 item 7): a grant signed in advance lands or fails on its own, a used nonce is
refused, and a pair's revocation voids a grant of that pair signed before it."""

from __future__ import annotations

from typing import Any

from dataset_helpers import (
    CITY_NODE,
    CITY_STEWARD,
    DATASET,
    MARY_NODE,
    OTHER,
    STEWARD,
    anchor,
    grant,
    manifest,
    recovered_after_replay,
)
from registry_helpers import CITY, MARY, Persona, reverts, sign

from chain import actions, eip712
from chain.consortium_registry import ConsortiumRegistry
from chain.dataset_registry import DatasetRegistry


def _pair(dataset_id: bytes, node_id: bytes) -> dict[str, Any]:
    return {"datasetId": dataset_id, "nodeId": node_id}


def _signed_grant(
    ds: DatasetRegistry, who: Persona, node_id: bytes, label: str, dataset_id: bytes = DATASET
) -> tuple[eip712.TypedData, bytes]:
    """``who``'s grant of ``dataset_id`` to ``node_id``, signed now and sent later."""
    message = {**_pair(dataset_id, node_id), "grantHash": grant(label)}
    typed = ds.typed("RecordGrant", who.address, message)
    return typed, sign(who, typed)


def _send(ds: DatasetRegistry, typed: eip712.TypedData, signature: bytes, who: Persona) -> Any:
    return ds.send_signed(typed["primaryType"], typed["message"], signature, signer=who.address)


def test_it_derives_the_pair_key_as_the_contract_does(ds: DatasetRegistry) -> None:
    declared = actions.action("RecordGrant")
    for pair in ((DATASET, MARY_NODE), (DATASET, CITY_NODE), (OTHER, MARY_NODE)):
        key = declared.nonce_key_of(_pair(*pair))
        assert key == ds.contract.functions.grantNonceKey(*pair).call()
        assert key == actions.action("RevokeGrant").nonce_key_of(_pair(*pair))
        assert 0 < key < 1 << 192
    assert actions.action("AnchorManifest").nonce_key_of({"datasetId": DATASET}) == 0


def test_it_keeps_each_pairs_nonces_apart_from_the_signers_sequence(
    ds: DatasetRegistry,
) -> None:
    anchor(ds, MARY, 1, manifest("v1"))
    typed, signature = _signed_grant(ds, MARY, MARY_NODE, "m")
    assert typed["message"]["nonce"] == 0  # the pair's first, though the anchor took one
    _send(ds, typed, signature, MARY)
    assert ds.nonce(MARY.address) == 1
    assert ds.nonce_for("RecordGrant", MARY.address, _pair(DATASET, MARY_NODE)) == 1
    assert ds.nonce_for("RecordGrant", MARY.address, _pair(DATASET, CITY_NODE)) == 0
    # NoncesKeyed's view packs the key above the sequence the typed data signs.
    key = actions.action("RecordGrant").nonce_key_of(_pair(DATASET, MARY_NODE))
    assert ds.contract.functions.nonces(MARY.address, key).call() == key << 64 | 1


def test_it_refuses_a_replayed_grant_and_leaves_other_pairs_alone(
    ds: DatasetRegistry,
) -> None:
    anchor(ds, MARY, 1, manifest("v1"))
    typed, signature = _signed_grant(ds, MARY, MARY_NODE, "m")
    city_typed, city_signature = _signed_grant(ds, MARY, CITY_NODE, "c")
    _send(ds, typed, signature, MARY)
    replayed = recovered_after_replay(typed, signature, 1)
    with reverts("MemberSignedInvalidSignature", expected=MARY.address, recovered=replayed):
        _send(ds, typed, signature, MARY)
    # Signed at the same nonce 0 as the first, for another pair: it still lands.
    assert city_typed["message"]["nonce"] == 0
    _send(ds, city_typed, city_signature, MARY)
    assert ds.grant_of(DATASET, CITY_NODE).active
    assert ds.nonce_for("RecordGrant", MARY.address, _pair(DATASET, CITY_NODE)) == 1


def test_a_refused_grant_holds_up_no_grant_signed_after_it(
    ds: DatasetRegistry, reg: ConsortiumRegistry
) -> None:
    anchor(ds, STEWARD, 1, manifest("v1"))
    anchor(ds, CITY_STEWARD, 1, manifest("city"), dataset_id=OTHER)
    first = _signed_grant(ds, MARY, MARY_NODE, "m")
    later = _signed_grant(ds, MARY, CITY_NODE, "c")
    city = _signed_grant(ds, CITY, CITY_NODE, "o", dataset_id=OTHER)
    reg.revoke_node(MARY_NODE, sender_key=MARY.key)
    with reverts("DatasetRegistryUnknownNode", nodeId=MARY_NODE):
        _send(ds, *first, MARY)
    _send(ds, *later, MARY)
    _send(ds, *city, CITY)
    assert ds.grant_of(DATASET, CITY_NODE).active and ds.grant_of(OTHER, CITY_NODE).active
    # The refused grant's nonce is still unspent: the pair's next action signs at it.
    assert ds.nonce_for("RecordGrant", MARY.address, _pair(DATASET, MARY_NODE)) == 0


def test_a_revocation_voids_a_grant_of_its_pair_signed_before_it(ds: DatasetRegistry) -> None:
    anchor(ds, MARY, 1, manifest("v1"))
    _send(ds, *_signed_grant(ds, MARY, CITY_NODE, "c1"), MARY)
    withheld = _signed_grant(ds, MARY, CITY_NODE, "c2")  # nonce 1, never sent
    other = _signed_grant(ds, MARY, MARY_NODE, "m")  # another pair's nonce 0
    revoke = ds.typed("RevokeGrant", MARY.address, _pair(DATASET, CITY_NODE))
    assert revoke["message"]["nonce"] == 1  # the same sequence as the pair's grants
    _send(ds, revoke, sign(MARY, revoke), MARY)
    assert not ds.grant_of(DATASET, CITY_NODE).active
    replayed = recovered_after_replay(withheld[0], withheld[1], 2)
    with reverts("MemberSignedInvalidSignature", expected=MARY.address, recovered=replayed):
        _send(ds, *withheld, MARY)
    assert not ds.grant_of(DATASET, CITY_NODE).active
    _send(ds, *other, MARY)  # the revocation moved no other pair's nonce
    assert ds.grant_of(DATASET, MARY_NODE).active
