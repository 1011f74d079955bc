"""Signed actions declared once: their types match the contracts' typehashes, their domain is
the one each contract publishes, and what eth-account signs from them the contracts accept."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from chain_helpers import CITY, EVE, HARBOUR, MARY, NORTH, deploy_registry, persona
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from chain import actions, eip712
from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry, Scope
from chain.dataset_registry import DatasetRegistry, dataset_id_of

SOURCES = Path(__file__).resolve().parents[2] / "contracts" / "src"
TYPEHASH = re.compile(r'keccak256\(\s*"(\w+\([^)]*\))"\s*\)')
NODE, NODE_SIGNER, STEWARD = keccak(text="node:actions"), persona("node-signer"), persona("stew")


def test_each_action_is_the_typehash_its_contract_checks() -> None:
    hashed = {
        name: set(TYPEHASH.findall((SOURCES / f"{name}.sol").read_text()))
        for name in (actions.CONSORTIUM_REGISTRY, actions.DATASET_REGISTRY)
    }
    assert not (SOURCES / f"{actions.TRAINING_ROUNDS}.sol").exists()  # then check it here too
    for declared in actions.ACTIONS.values():
        if declared.contract == actions.TRAINING_ROUNDS:
            continue
        assert (declared.encode_type in hashed[declared.contract]) is declared.on_chain, declared
    on_chain = {
        a.encode_type
        for a in actions.ACTIONS.values()
        if a.on_chain and a.contract != actions.TRAINING_ROUNDS
    }
    assert set().union(*hashed.values()) == on_chain  # nothing hashed goes undeclared


def test_it_reads_each_domain_from_the_chain_once(
    anvil_client: ChainClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = anvil_client
    reg = deploy_registry(client)
    ds = DatasetRegistry.deploy(client, registry_address=reg.address)
    keys = ("name", "version", "chainId", "verifyingContract")
    for wrapper, name in ((reg, eip712.DOMAIN_NAME), (ds, eip712.DATASETS_DOMAIN_NAME)):
        fields, *raw, _salt, _ext = client.call(wrapper.contract.functions.eip712Domain())
        domain = actions.domain_of(client, wrapper.address)
        assert fields == b"\x0f"  # name, version, chainId, verifyingContract
        assert domain == dict(zip(keys, raw, strict=True))
        assert domain == eip712.domain(client.chain_id, wrapper.address, name)
    calls: list[Any] = []
    monkeypatch.setattr(client, "call", lambda *args, **kw: calls.append(args))
    assert actions.domain_of(client, reg.address.lower())["verifyingContract"] == reg.address
    assert calls == []  # cached per (chain id, address)


def _signed(
    client: ChainClient, who: Any, name: str, address: str, nonce_of: Any, /, **message: Any
) -> bytes:
    """eth-account's signature over the declared action, built with the chain's domain."""
    if any(f == "nonce" for f, _ in actions.action(name).fields):
        message["nonce"] = nonce_of(who.address)
    typed = actions.typed_data(client, name, address, message)
    return bytes(Account.sign_message(encode_typed_data(full_message=typed), who.key).signature)


def test_the_contracts_accept_what_eth_account_signs_from_each_declaration(
    tester_client: ChainClient,
) -> None:
    client = tester_client
    reg: ConsortiumRegistry = deploy_registry(client)
    ds = DatasetRegistry.deploy(client, registry_address=reg.address)

    def sign(who: Any, name: str, /, **message: Any) -> bytes:
        to = ds if actions.action(name).contract == actions.DATASET_REGISTRY else reg

        def nonce_of(address: str) -> int:
            """Under the key the action declares: a grant's pair, else the signer's own."""
            return to.nonce_for(name, address, message)

        return _signed(client, who, name, to.address, nonce_of, **message)

    keys = {"role": 1, "dataKey": b"\x07" * 32, "nameHash": b"\x08" * 32}
    applied = sign(HARBOUR, "Application", applicant=HARBOUR.address, **keys)
    sponsored = sign(MARY, "SponsorAdmission", applicant=HARBOUR.address, **keys)
    reg.send_signed(
        "SponsorAdmission",
        {
            "applicant": HARBOUR.address,
            "role": 1,
            "dataKey": b"\x07" * 32,
            "nameHash": b"\x08" * 32,
        },
        sponsored,
        signer=MARY.address,
        unsigned={"applicantSignature": applied},
    )
    for voter in (CITY, NORTH):
        vote = sign(voter, "Vote", proposalId=1, support=True, voter=voter.address)
        reg.send_signed(
            "Vote",
            {"proposalId": 1, "support": True, "voter": voter.address},
            vote,
            signer=voter.address,
        )
    assert reg.member_id_of(HARBOUR.address) == 5
    delegate = sign(MARY, "SetDelegate", delegate=STEWARD.address, scope=Scope.DATA, enabled=True)
    reg.send_signed(
        "SetDelegate",
        {"delegate": STEWARD.address, "scope": Scope.DATA, "enabled": True},
        delegate,
        signer=MARY.address,
    )
    register = sign(MARY, "RegisterNode", nodeId=NODE, signer=NODE_SIGNER.address, dataKey=NODE)
    reg.send_signed(
        "RegisterNode",
        {"nodeId": NODE, "signer": NODE_SIGNER.address, "dataKey": NODE},
        register,
        signer=MARY.address,
    )
    rotate = sign(MARY, "RotateNodeKey", nodeId=NODE, dataKey=b"\x09" * 32)
    reg.send_signed(
        "RotateNodeKey", {"nodeId": NODE, "dataKey": b"\x09" * 32}, rotate, signer=MARY.address
    )
    removal = sign(CITY, "ProposeRemoval", memberId=5)
    reg.send_signed("ProposeRemoval", {"memberId": 5}, removal, signer=CITY.address)
    rotation = sign(EVE, "ProposeRotation", memberId=2, newGovernance=EVE.address)
    with pytest.raises(Exception, match="ConsortiumRegistryNotMember"):  # EVE is no member
        reg.send_signed(
            "ProposeRotation",
            {"memberId": 2, "newGovernance": EVE.address},
            rotation,
            signer=EVE.address,
        )
    rotation = sign(CITY, "ProposeRotation", memberId=2, newGovernance=EVE.address)
    reg.send_signed(
        "ProposeRotation",
        {"memberId": 2, "newGovernance": EVE.address},
        rotation,
        signer=CITY.address,
    )
    assert reg.proposal_count() == 3

    dataset, manifest, grant = dataset_id_of(1, uuid.UUID(int=7)), keccak(b"m"), keccak(b"g")
    anchor = sign(
        STEWARD,
        "AnchorManifest",
        datasetId=dataset,
        version=1,
        manifestHash=manifest,
        previous=b"\x00" * 32,
    )
    ds.send_signed(
        "AnchorManifest",
        {"datasetId": dataset, "version": 1, "manifestHash": manifest, "previous": b"\x00" * 32},
        anchor,
        signer=STEWARD.address,
    )
    recorded = sign(STEWARD, "RecordGrant", datasetId=dataset, nodeId=NODE, grantHash=grant)
    ds.send_signed(
        "RecordGrant",
        {"datasetId": dataset, "nodeId": NODE, "grantHash": grant},
        recorded,
        signer=STEWARD.address,
    )
    revoked = sign(MARY, "RevokeGrant", datasetId=dataset, nodeId=NODE)
    ds.send_signed(
        "RevokeGrant", {"datasetId": dataset, "nodeId": NODE}, revoked, signer=MARY.address
    )
    withdrawn = sign(MARY, "WithdrawDataset", datasetId=dataset)
    ds.send_signed("WithdrawDataset", {"datasetId": dataset}, withdrawn, signer=MARY.address)
    assert ds.dataset(dataset).withdrawn and not ds.grant_of(dataset, NODE).active
    revoke = sign(MARY, "RevokeNode", nodeId=NODE)
    reg.send_signed("RevokeNode", {"nodeId": NODE}, revoke, signer=MARY.address)
    assert not reg.node(NODE).active


def test_it_refuses_an_action_sent_to_the_wrong_contract(tester_client: ChainClient) -> None:
    reg = deploy_registry(tester_client)
    with pytest.raises(ValueError, match="WithdrawDataset is signed for DatasetRegistry"):
        reg.typed("WithdrawDataset", MARY.address, {"datasetId": b"\x01" * 32})
    with pytest.raises(KeyError, match="no signed action 'Withdraw'"):
        actions.action("Withdraw")
    with pytest.raises(ValueError, match="Vote fields"):
        actions.typed_data(tester_client, "Vote", reg.address, {"proposalId": 1})


def test_a_round_update_declared_ahead_of_its_contract_builds_its_typed_data() -> None:
    """One declaration is all an action needs to be signed: its typed data hashes as EIP-712
    says (struct hash by hand from the encode type, against eth-account's)."""
    update = actions.action("Update")
    assert update.encode_type == (
        "Update(uint256 roundId,uint256 memberId,bytes32 nodeId,bytes32 updateHash,"
        "uint256 sampleCount,uint256 nonce)"
    )
    domain = {
        "name": "MedChain Rounds",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": NODE_SIGNER.address,
    }
    message = {
        "roundId": 3,
        "memberId": 1,
        "nodeId": NODE,
        "updateHash": keccak(text="weights"),
        "sampleCount": 20,
        "nonce": 0,
    }
    typed = actions.typed_data_in(domain, "Update", message)
    assert typed["message"]["nodeId"] == "0x" + NODE.hex()
    struct = keccak(
        keccak(text=update.encode_type)
        + b"".join(
            (
                (3).to_bytes(32, "big"),
                (1).to_bytes(32, "big"),
                NODE,
                keccak(text="weights"),
                (20).to_bytes(32, "big"),
                (0).to_bytes(32, "big"),
            )
        )
    )
    assert encode_typed_data(full_message=typed).body == struct
    signed = Account.sign_message(encode_typed_data(full_message=typed), NODE_SIGNER.key)
    assert eip712.recover_typed(typed, signed.signature) == NODE_SIGNER.address
    with pytest.raises(ValueError, match="Update fields"):
        actions.typed_data_in(domain, "Update", {**message, "extra": 1})


def test_each_relayed_form_takes_the_signed_fields_then_the_signer_and_the_signature() -> None:
    """What ``relay_arguments`` lines up is what the contract's ``…BySig`` function takes."""
    from chain.artifacts import load_artifact

    abis = {
        name: {f["name"]: f for f in load_artifact(name).abi if f["type"] == "function"}
        for name in (actions.CONSORTIUM_REGISTRY, actions.DATASET_REGISTRY)
    }
    message = {"nonce": 0}
    for declared in actions.ACTIONS.values():
        if not declared.on_chain or declared.contract == actions.TRAINING_ROUNDS:
            continue
        if declared.name == "Application":  # relayed inside the sponsor's SponsorAdmission
            assert declared.relayed_by not in abis[declared.contract]
            continue
        inputs = [i["type"] for i in abis[declared.contract][declared.relayed_by]["inputs"]]
        if declared.name == "SponsorAdmission":  # the applicant's signature rides along
            assert inputs[4] == "bytes" and len(inputs) == 7
            continue
        fields = {f: ("0x" + "11" * 32 if t == "bytes32" else 1) for f, t in declared.fields}
        fields.update({f: EVE.address for f, t in declared.fields if t == "address"})
        arguments = declared.relay_arguments({**message, **fields}, MARY.address)
        signed = [t for f, t in declared.fields if f != "nonce"]
        expected = signed if declared.signer_field else [*signed, "address"]
        assert inputs == [*expected, "bytes"], declared.name
        assert len(arguments) == len(expected), declared.name
