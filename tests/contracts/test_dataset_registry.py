"""Manifest anchors, key grants and withdrawal, checked against the ConsortiumRegistry."""

from __future__ import annotations

from dataset_helpers import (
    CITY_NODE,
    CITY_STEWARD,
    DATASET,
    MARY_NODE,
    OPERATOR,
    OTHER,
    STEWARD,
    ZERO,
    anchor,
    grant,
    manifest,
    recovered_after_replay,
    remove_member,
)
from registry_helpers import CITY, EVE, MARY, NEWKEY, NORTH, reverts, sign

from chain import eip712
from chain.consortium_registry import ConsortiumRegistry, Scope
from chain.dataset_registry import Dataset, DatasetRegistry, Grant, dataset_id_of, dataset_id_parts

M1, M2, M3 = manifest("v1"), manifest("v2"), manifest("v3")
ZERO_ADDRESS = "0x" + "00" * 20


def events(ds: DatasetRegistry, receipt) -> list[tuple[str, dict]]:
    return [(e.name, e.args) for e in ds.decode_events(receipt)]


def test_it_anchors_version_one_signed_by_a_data_delegate(ds: DatasetRegistry) -> None:
    receipt = anchor(ds, STEWARD, 1, M1)
    assert events(ds, receipt) == [
        (
            "DatasetAnchored",
            {
                "datasetId": DATASET,
                "ownerId": 1,
                "version": 1,
                "manifestHash": M1,
                "previous": ZERO,
            },
        )
    ]
    assert ds.dataset(DATASET) == Dataset(DATASET, 1, 1, M1, False)
    assert ds.dataset(DATASET).exists and not ds.dataset(OTHER).exists
    assert ds.manifest_of(DATASET, 1) == M1
    assert ds.manifest_of(DATASET, 2) is None
    assert ds.version_of(DATASET, M1) == 1
    assert ds.version_of(DATASET, M2) == 0
    assert ds.nonce(STEWARD.address) == 1


def test_it_chains_versions_by_governance_and_delegate(ds: DatasetRegistry) -> None:
    ds.anchor_manifest(dataset_id=DATASET, version=1, manifest_hash=M1, sender_key=MARY.key)
    receipt = anchor(ds, STEWARD, 2, M2, previous=M1)
    assert events(ds, receipt)[0][1] == {
        "datasetId": DATASET,
        "ownerId": 1,
        "version": 2,
        "manifestHash": M2,
        "previous": M1,
    }
    ds.anchor_manifest(
        dataset_id=DATASET, version=3, manifest_hash=M3, previous=M2, sender_key=STEWARD.key
    )
    assert ds.dataset(DATASET) == Dataset(DATASET, 1, 3, M3, False)
    assert [ds.manifest_of(DATASET, v) for v in (1, 2, 3)] == [M1, M2, M3]
    assert ds.version_of(DATASET, M2) == 2
    # Another member's delegate owns its own datasets.
    anchor(ds, CITY_STEWARD, 1, manifest("city"), dataset_id=OTHER)
    assert ds.dataset(OTHER).owner_id == 2


def test_it_refuses_broken_version_chains(ds: DatasetRegistry) -> None:
    with reverts("DatasetRegistryVersionMismatch", datasetId=DATASET, expected=1, given=2):
        anchor(ds, STEWARD, 2, M1)
    with reverts("DatasetRegistryPreviousMismatch", datasetId=DATASET, expected=ZERO, given=M3):
        anchor(ds, STEWARD, 1, M1, previous=M3)
    anchor(ds, STEWARD, 1, M1)
    with reverts("DatasetRegistryVersionMismatch", datasetId=DATASET, expected=2, given=1):
        anchor(ds, STEWARD, 1, M2)
    with reverts("DatasetRegistryVersionMismatch", datasetId=DATASET, expected=2, given=3):
        anchor(ds, STEWARD, 3, M2, previous=M1)
    with reverts("DatasetRegistryPreviousMismatch", datasetId=DATASET, expected=M1, given=M3):
        anchor(ds, STEWARD, 2, M2, previous=M3)
    with reverts("DatasetRegistryManifestAlreadyAnchored", manifestHash=M1):
        anchor(ds, STEWARD, 2, M1, previous=M1)
    with reverts("DatasetRegistryForeignId", datasetId=OTHER, idMemberId=2, memberId=1):
        anchor(ds, STEWARD, 1, M2, dataset_id=OTHER)
    with reverts("DatasetRegistryInvalidDataset", datasetId=ZERO):
        anchor(ds, STEWARD, 1, M2, dataset_id=ZERO)
    with reverts("DatasetRegistryInvalidHash", hash=ZERO):
        anchor(ds, STEWARD, 2, ZERO, previous=M1)
    assert ds.nonce(STEWARD.address) == 1  # a refused action uses no nonce


def test_it_refuses_outsiders_and_other_members(ds: DatasetRegistry) -> None:
    with reverts("DatasetRegistryNotAuthorised", signer=EVE.address):
        anchor(ds, EVE, 1, M1)
    with reverts("DatasetRegistryNotAuthorised", signer=OPERATOR.address):  # a NODE delegate
        anchor(ds, OPERATOR, 1, M1)
    with reverts("DatasetRegistryNotAuthorised", signer=EVE.address):
        ds.anchor_manifest(dataset_id=DATASET, version=1, manifest_hash=M1, sender_key=EVE.key)
    anchor(ds, STEWARD, 1, M1)
    with reverts("DatasetRegistryForeignId", datasetId=DATASET, idMemberId=1, memberId=2):
        anchor(ds, CITY, 2, M2, previous=M1)
    with reverts("DatasetRegistryForeignId", datasetId=DATASET, idMemberId=1, memberId=2):
        anchor(ds, CITY_STEWARD, 2, M2, previous=M1)


def test_it_lets_no_member_squat_another_members_dataset_id(ds: DatasetRegistry) -> None:
    """CITY's steward copies MARY's pending anchor from the mempool and sends it first."""
    with reverts("DatasetRegistryForeignId", datasetId=DATASET, idMemberId=1, memberId=2):
        ds.anchor_manifest(
            dataset_id=DATASET, version=1, manifest_hash=M1, sender_key=CITY_STEWARD.key
        )
    # The same uuid and manifest hash under CITY's own id land there and block nothing.
    squatted = dataset_id_of(2, dataset_id_parts(DATASET)[1])
    anchor(ds, CITY_STEWARD, 1, M1, dataset_id=squatted)
    assert ds.dataset(squatted).owner_id == 2
    receipt = anchor(ds, STEWARD, 1, M1)
    assert events(ds, receipt)[0][1]["ownerId"] == 1
    assert ds.dataset(DATASET) == Dataset(DATASET, 1, 1, M1, False)
    assert (ds.version_of(DATASET, M1), ds.version_of(squatted, M1)) == (1, 1)
    assert (
        ds.client.call(ds.contract.functions.datasetIdOf(1, dataset_id_parts(DATASET)[1].bytes))
        == DATASET
    )


def test_it_refuses_a_removed_member_and_its_delegates(
    ds: DatasetRegistry, reg: ConsortiumRegistry
) -> None:
    anchor(ds, CITY, 1, M1, dataset_id=OTHER)
    anchor(ds, STEWARD, 1, M2)
    remove_member(reg, 2)
    with reverts("DatasetRegistryNotAuthorised", signer=CITY.address):
        anchor(ds, CITY, 2, M3, previous=M1, dataset_id=OTHER)
    with reverts("DatasetRegistryMemberInactive", memberId=2):  # the registry keeps the delegation
        anchor(ds, CITY_STEWARD, 2, M3, previous=M1, dataset_id=OTHER)
    with reverts("DatasetRegistryNotAuthorised", signer=CITY.address):
        ds.withdraw(dataset_id=OTHER, sender_key=CITY.key)
    assert reg.node(CITY_NODE).active  # still listed, but its member is gone
    with reverts("DatasetRegistryUnknownNode", nodeId=CITY_NODE):
        ds.record_grant(
            dataset_id=DATASET, node_id=CITY_NODE, grant_hash=grant("c"), sender_key=MARY.key
        )


def test_it_refuses_forged_replayed_and_foreign_signatures(ds: DatasetRegistry) -> None:
    typed = ds.anchor_manifest_typed(
        signer=STEWARD.address, dataset_id=DATASET, version=1, manifest_hash=M1
    )
    message = {"datasetId": DATASET, "version": 1, "manifestHash": M1, "previous": ZERO}

    def relay(signature: bytes):
        return ds.send_signed("AnchorManifest", message, signature, signer=STEWARD.address)

    with reverts("MemberSignedInvalidSignature", expected=STEWARD.address, recovered=EVE.address):
        relay(sign(EVE, typed))
    with reverts("MemberSignedInvalidSignature", expected=STEWARD.address, recovered=ZERO_ADDRESS):
        relay(b"\x01" * 65)
    foreign = [
        {**typed, "domain": {**typed["domain"], "name": eip712.DOMAIN_NAME}},
        {**typed, "domain": {**typed["domain"], "chainId": 1}},
        {**typed, "domain": {**typed["domain"], "verifyingContract": ds.registry_address()}},
    ]
    for other in foreign:
        signature = sign(STEWARD, other)
        recovered = eip712.recover_typed(typed, signature)
        assert recovered != STEWARD.address
        with reverts("MemberSignedInvalidSignature", expected=STEWARD.address, recovered=recovered):
            relay(signature)
    signature = sign(STEWARD, typed)
    relay(signature)
    replayed = recovered_after_replay(typed, signature, ds.nonce(STEWARD.address))
    with reverts("MemberSignedInvalidSignature", expected=STEWARD.address, recovered=replayed):
        relay(signature)
    # A signature for one action does not pass for another with the same fields.
    withdraw = ds.withdraw_typed(signer=MARY.address, dataset_id=DATASET)
    revoke = ds.revoke_grant_typed(signer=MARY.address, dataset_id=DATASET, node_id=MARY_NODE)
    wrong = sign(MARY, revoke)
    with reverts(
        "MemberSignedInvalidSignature",
        expected=MARY.address,
        recovered=eip712.recover_typed(withdraw, wrong),
    ):
        ds.send_signed("WithdrawDataset", {"datasetId": DATASET}, wrong, signer=MARY.address)


def test_it_records_grants_to_own_and_cross_member_nodes(ds: DatasetRegistry) -> None:
    anchor(ds, STEWARD, 1, M1)
    typed = ds.record_grant_typed(
        signer=MARY.address, dataset_id=DATASET, node_id=MARY_NODE, grant_hash=grant("m")
    )
    receipt = ds.send_signed(
        "RecordGrant",
        {"datasetId": DATASET, "nodeId": MARY_NODE, "grantHash": grant("m")},
        sign(MARY, typed),
        signer=MARY.address,
    )
    assert events(ds, receipt) == [
        (
            "GrantRecorded",
            {
                "datasetId": DATASET,
                "nodeId": MARY_NODE,
                "nodeMemberId": 1,
                "grantHash": grant("m"),
                "crossMember": False,
            },
        )
    ]
    receipt = ds.record_grant(
        dataset_id=DATASET, node_id=CITY_NODE, grant_hash=grant("c"), sender_key=MARY.key
    )
    [(name, args)] = events(ds, receipt)
    assert (name, args["nodeMemberId"], args["crossMember"]) == ("GrantRecorded", 2, True)
    assert ds.grant_of(DATASET, CITY_NODE) == Grant(DATASET, CITY_NODE, grant("c"), True)
    # A node's key rotated: the owner records a new grant in place of the old one.
    ds.record_grant(
        dataset_id=DATASET, node_id=CITY_NODE, grant_hash=grant("c2"), sender_key=MARY.key
    )
    assert ds.grant_of(DATASET, CITY_NODE).grant_hash == grant("c2")
    assert ds.grant_of(OTHER, CITY_NODE) == Grant(OTHER, CITY_NODE, ZERO, False)


def test_it_revokes_a_grant(ds: DatasetRegistry) -> None:
    anchor(ds, STEWARD, 1, M1)
    ds.record_grant(
        dataset_id=DATASET, node_id=CITY_NODE, grant_hash=grant("c"), sender_key=MARY.key
    )
    typed = ds.revoke_grant_typed(signer=MARY.address, dataset_id=DATASET, node_id=CITY_NODE)
    receipt = ds.send_signed(
        "RevokeGrant",
        {"datasetId": DATASET, "nodeId": CITY_NODE},
        sign(MARY, typed),
        signer=MARY.address,
    )
    assert events(ds, receipt) == [("GrantRevoked", {"datasetId": DATASET, "nodeId": CITY_NODE})]
    assert ds.grant_of(DATASET, CITY_NODE) == Grant(DATASET, CITY_NODE, grant("c"), False)
    with reverts("DatasetRegistryUnknownGrant", datasetId=DATASET, nodeId=CITY_NODE):
        ds.revoke_grant(dataset_id=DATASET, node_id=CITY_NODE, sender_key=MARY.key)
    with reverts("DatasetRegistryUnknownGrant", datasetId=DATASET, nodeId=MARY_NODE):
        ds.revoke_grant(dataset_id=DATASET, node_id=MARY_NODE, sender_key=MARY.key)


def test_it_takes_grants_from_the_owners_governance_or_data_delegates(
    ds: DatasetRegistry, reg: ConsortiumRegistry
) -> None:
    def record(sender_key: str, node_id: bytes = MARY_NODE, dataset_id: bytes = DATASET) -> None:
        ds.record_grant(
            dataset_id=dataset_id, node_id=node_id, grant_hash=grant("g"), sender_key=sender_key
        )

    with reverts("DatasetRegistryUnknownDataset", datasetId=DATASET):
        record(MARY.key)
    anchor(ds, STEWARD, 1, M1)
    with reverts(
        "DatasetRegistryNotAuthorised", signer=OPERATOR.address
    ):  # a NODE delegate may not grant
        record(OPERATOR.key)
    with reverts("DatasetRegistryNotAuthorised", signer=EVE.address):
        record(EVE.key)
    with reverts("DatasetRegistryNotOwner", datasetId=DATASET, memberId=2):
        record(CITY.key, node_id=CITY_NODE)
    with reverts(
        "DatasetRegistryNotOwner", datasetId=DATASET, memberId=2
    ):  # another member's steward
        record(CITY_STEWARD.key, node_id=CITY_NODE)
    with reverts("DatasetRegistryUnknownNode", nodeId=OTHER):
        record(MARY.key, node_id=OTHER)
    with reverts("DatasetRegistryUnknownNode", nodeId=OTHER):
        record(STEWARD.key, node_id=OTHER)
    with reverts("DatasetRegistryInvalidHash", hash=ZERO):
        ds.record_grant(dataset_id=DATASET, node_id=MARY_NODE, grant_hash=ZERO, sender_key=MARY.key)
    record(MARY.key)
    record(STEWARD.key)
    with reverts("DatasetRegistryNotOwner", datasetId=DATASET, memberId=2):
        ds.revoke_grant(dataset_id=DATASET, node_id=MARY_NODE, sender_key=CITY.key)
    with reverts(
        "DatasetRegistryNotAuthorised", signer=STEWARD.address
    ):  # revoking stays with governance
        ds.revoke_grant(dataset_id=DATASET, node_id=MARY_NODE, sender_key=STEWARD.key)
    reg.revoke_node(MARY_NODE, sender_key=MARY.key)
    with reverts("DatasetRegistryUnknownNode", nodeId=MARY_NODE):
        record(MARY.key)
    with reverts("DatasetRegistryUnknownNode", nodeId=MARY_NODE):
        record(STEWARD.key)
    ds.revoke_grant(dataset_id=DATASET, node_id=MARY_NODE, sender_key=MARY.key)  # still revocable


def test_it_lets_a_data_delegate_grant_its_members_own_nodes(ds: DatasetRegistry) -> None:
    anchor(ds, STEWARD, 1, M1)
    typed = ds.record_grant_typed(
        signer=STEWARD.address, dataset_id=DATASET, node_id=MARY_NODE, grant_hash=grant("m")
    )
    receipt = ds.send_signed(
        "RecordGrant",
        {"datasetId": DATASET, "nodeId": MARY_NODE, "grantHash": grant("m")},
        sign(STEWARD, typed),
        signer=STEWARD.address,
    )
    assert events(ds, receipt) == [
        (
            "GrantRecorded",
            {
                "datasetId": DATASET,
                "nodeId": MARY_NODE,
                "nodeMemberId": 1,
                "grantHash": grant("m"),
                "crossMember": False,
            },
        )
    ]
    assert ds.grant_of(DATASET, MARY_NODE) == Grant(DATASET, MARY_NODE, grant("m"), True)
    assert ds.nonce(STEWARD.address) == 1  # the anchor; the grant took its pair's own nonce
    assert (
        ds.nonce_for("RecordGrant", STEWARD.address, {"datasetId": DATASET, "nodeId": MARY_NODE})
        == 1
    )


def test_it_refuses_a_data_delegates_grant_to_another_members_node(ds: DatasetRegistry) -> None:
    anchor(ds, STEWARD, 1, M1)
    typed = ds.record_grant_typed(
        signer=STEWARD.address, dataset_id=DATASET, node_id=CITY_NODE, grant_hash=grant("c")
    )
    with reverts(
        "DatasetRegistryCrossMemberGrant",
        delegate=STEWARD.address,
        nodeId=CITY_NODE,
        nodeMemberId=2,
    ):
        ds.send_signed(
            "RecordGrant",
            {"datasetId": DATASET, "nodeId": CITY_NODE, "grantHash": grant("c")},
            sign(STEWARD, typed),
            signer=STEWARD.address,
        )
    with reverts(
        "DatasetRegistryCrossMemberGrant",
        delegate=STEWARD.address,
        nodeId=CITY_NODE,
        nodeMemberId=2,
    ):
        ds.record_grant(
            dataset_id=DATASET, node_id=CITY_NODE, grant_hash=grant("c"), sender_key=STEWARD.key
        )
    assert ds.grant_of(DATASET, CITY_NODE).active is False
    # The same grant signed by the owner's governance key is the cross-member "server mode".
    typed = ds.record_grant_typed(
        signer=MARY.address, dataset_id=DATASET, node_id=CITY_NODE, grant_hash=grant("c")
    )
    receipt = ds.send_signed(
        "RecordGrant",
        {"datasetId": DATASET, "nodeId": CITY_NODE, "grantHash": grant("c")},
        sign(MARY, typed),
        signer=MARY.address,
    )
    [(name, args)] = events(ds, receipt)
    assert (name, args["nodeMemberId"], args["crossMember"]) == ("GrantRecorded", 2, True)


def test_it_refuses_grants_from_a_removed_data_delegate(
    ds: DatasetRegistry, reg: ConsortiumRegistry
) -> None:
    anchor(ds, STEWARD, 1, M1)
    typed = ds.record_grant_typed(
        signer=STEWARD.address, dataset_id=DATASET, node_id=MARY_NODE, grant_hash=grant("m")
    )
    signature = sign(STEWARD, typed)  # signed while still a delegate
    reg.set_delegate(STEWARD.address, Scope.DATA, False, sender_key=MARY.key)
    with reverts("DatasetRegistryNotAuthorised", signer=STEWARD.address):
        ds.send_signed(
            "RecordGrant",
            {"datasetId": DATASET, "nodeId": MARY_NODE, "grantHash": grant("m")},
            signature,
            signer=STEWARD.address,
        )
    with reverts("DatasetRegistryNotAuthorised", signer=STEWARD.address):
        ds.record_grant(
            dataset_id=DATASET, node_id=MARY_NODE, grant_hash=grant("m"), sender_key=STEWARD.key
        )


def test_it_refuses_grants_from_a_removed_members_data_delegate(
    ds: DatasetRegistry, reg: ConsortiumRegistry
) -> None:
    anchor(ds, CITY_STEWARD, 1, M1, dataset_id=OTHER)
    remove_member(reg, 2)
    with reverts("DatasetRegistryMemberInactive", memberId=2):  # the registry keeps the delegation
        ds.record_grant(
            dataset_id=OTHER, node_id=CITY_NODE, grant_hash=grant("c"), sender_key=CITY_STEWARD.key
        )


def test_it_withdraws_a_dataset_for_good(ds: DatasetRegistry) -> None:
    with reverts("DatasetRegistryUnknownDataset", datasetId=DATASET):
        ds.withdraw(dataset_id=DATASET, sender_key=MARY.key)
    anchor(ds, STEWARD, 1, M1)
    ds.record_grant(
        dataset_id=DATASET, node_id=MARY_NODE, grant_hash=grant("m"), sender_key=MARY.key
    )
    with reverts("DatasetRegistryNotAuthorised", signer=STEWARD.address):
        ds.withdraw(dataset_id=DATASET, sender_key=STEWARD.key)
    with reverts("DatasetRegistryNotOwner", datasetId=DATASET, memberId=3):
        ds.withdraw(dataset_id=DATASET, sender_key=NORTH.key)
    typed = ds.withdraw_typed(signer=MARY.address, dataset_id=DATASET)
    receipt = ds.send_signed(
        "WithdrawDataset", {"datasetId": DATASET}, sign(MARY, typed), signer=MARY.address
    )
    assert events(ds, receipt) == [("DatasetWithdrawn", {"datasetId": DATASET, "ownerId": 1})]
    assert ds.dataset(DATASET) == Dataset(DATASET, 1, 1, M1, True)
    with reverts("DatasetRegistryDatasetIsWithdrawn", datasetId=DATASET):
        anchor(ds, STEWARD, 2, M2, previous=M1)
    with reverts("DatasetRegistryDatasetIsWithdrawn", datasetId=DATASET):
        ds.withdraw(dataset_id=DATASET, sender_key=MARY.key)
    with reverts("DatasetRegistryDatasetIsWithdrawn", datasetId=DATASET):
        ds.record_grant(
            dataset_id=DATASET, node_id=CITY_NODE, grant_hash=grant("c"), sender_key=MARY.key
        )
    ds.revoke_grant(dataset_id=DATASET, node_id=MARY_NODE, sender_key=MARY.key)
    assert ds.manifest_of(DATASET, 1) == M1  # history stays


def test_it_follows_a_rotated_governance_key(ds: DatasetRegistry, reg: ConsortiumRegistry) -> None:
    anchor(ds, MARY, 1, M1)
    receipt = reg.propose_rotation(1, NEWKEY.address, sender_key=MARY.key)
    proposal_id = reg.proposal_id_from(reg.decode_events(receipt))
    reg.vote(proposal_id, True, sender_key=CITY.key)
    reg.vote(proposal_id, True, sender_key=NORTH.key)
    with reverts("DatasetRegistryNotAuthorised", signer=MARY.address):
        anchor(ds, MARY, 2, M2, previous=M1)
    receipt = anchor(ds, NEWKEY, 2, M2, previous=M1)
    assert ds.decode_events(receipt)[0].args["ownerId"] == 1
    ds.withdraw(dataset_id=DATASET, sender_key=NEWKEY.key)


def test_it_reads_the_registry_it_was_deployed_with(
    ds: DatasetRegistry, reg: ConsortiumRegistry
) -> None:
    assert ds.registry_address() == reg.address
    _fields, name, version, chain_id, contract, _salt, _ext = ds.client.call(
        ds.contract.functions.eip712Domain()
    )
    typed = ds.withdraw_typed(signer=MARY.address, dataset_id=DATASET)
    assert typed["domain"] == {
        "name": "MedChain Datasets",
        "version": version,
        "chainId": chain_id,
        "verifyingContract": contract,
    }
    assert name == eip712.DATASETS_DOMAIN_NAME
    with reverts("DatasetRegistryInvalidAddress", account=ZERO_ADDRESS):
        DatasetRegistry.deploy(ds.client, registry_address=ZERO_ADDRESS)
