from __future__ import annotations

import json

import pytest
from chain_helpers import CITY, EVE, HARBOUR, MARY, deploy_registry
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from chain import eip712
from chain.client import ChainClient

CONTRACT = "0x" + "11" * 20


def test_it_builds_wallet_ready_typed_data() -> None:
    typed = eip712.typed_for(
        "Vote", 31337, CONTRACT, proposal_id=7, support=True, voter=EVE.address, nonce=2
    )
    assert json.loads(json.dumps(typed)) == typed  # plain JSON, as eth_signTypedData_v4 takes
    assert typed["primaryType"] == "Vote"
    assert typed["domain"] == {
        "name": "MedChain Consortium",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": "0x1111111111111111111111111111111111111111",
    }
    assert [f["name"] for f in typed["types"]["Vote"]] == [
        "proposalId",
        "support",
        "voter",
        "nonce",
    ]
    node = eip712.typed_for(
        "RegisterNode",
        1,
        CONTRACT,
        node_id=b"\x01" * 32,
        signer=EVE.address,
        data_key="0x" + "02" * 32,
        nonce=0,
    )
    assert node["message"]["nodeId"] == "0x" + "01" * 32
    encode_typed_data(full_message=node)
    with pytest.raises(ValueError):
        eip712.typed_for("RevokeNode", 1, CONTRACT, node_id=b"\x01" * 31, nonce=0)


@pytest.mark.parametrize(
    "typed",
    [
        eip712.typed_for(
            "Application",
            1,
            CONTRACT,
            applicant=EVE.address,
            role=1,
            data_key=b"\x01" * 32,
            name_hash=b"\x02" * 32,
            nonce=0,
        ),
        eip712.typed_for(
            "SponsorAdmission",
            1,
            CONTRACT,
            applicant=EVE.address,
            role=2,
            data_key=b"\x01" * 32,
            name_hash=b"\x02" * 32,
            nonce=3,
        ),
        eip712.typed_for(
            "SetDelegate", 1, CONTRACT, delegate=EVE.address, scope=2, enabled=False, nonce=1
        ),
        eip712.typed_for("RevokeNode", 1, CONTRACT, node_id=b"\x03" * 32, nonce=9),
        eip712.typed_for(
            "RotateNodeKey", 1, CONTRACT, node_id=b"\x03" * 32, data_key=b"\x04" * 32, nonce=9
        ),
        eip712.typed_for(
            "NodeCheckIn", 1, CONTRACT, node_id=b"\x03" * 32, challenge=keccak(text="c")
        ),
    ],
    ids=lambda t: t["primaryType"],
)
def test_it_signs_and_recovers(typed: eip712.TypedData) -> None:
    signature = eip712.sign_typed(MARY.key, typed)
    assert len(signature) == 65 and signature[-1] in (27, 28)
    assert eip712.recover_typed(typed, signature) == MARY.address
    assert eip712.recover_typed(typed, "0x" + signature.hex()) == MARY.address
    other = {**typed, "domain": {**typed["domain"], "chainId": 2}}
    assert eip712.recover_typed(other, signature) != MARY.address


def test_it_matches_the_contracts_domain_and_verifies_on_chain(client: ChainClient) -> None:
    reg = deploy_registry(client)
    fields, name, version, chain_id, contract, _salt, _ext = client.call(
        reg.contract.functions.eip712Domain()
    )
    typed = reg.vote_typed(1, True, CITY.address)
    assert (name, version, chain_id, contract) == (
        typed["domain"]["name"],
        typed["domain"]["version"],
        client.chain_id,
        reg.address,
    )
    # The contract accepts what eth-account signed: open a proposal, relay a signed vote.
    app = reg.application_typed(HARBOUR.address, 1, b"\x07" * 32, b"\x08" * 32)
    reg.sponsor_admission(
        HARBOUR.address,
        1,
        b"\x07" * 32,
        b"\x08" * 32,
        eip712.sign_typed(HARBOUR.key, app),
        sender_key=MARY.key,
    )
    typed = reg.vote_typed(1, True, CITY.address)
    receipt = reg.send_signed(
        "Vote",
        {"proposalId": 1, "support": True, "voter": CITY.address},
        eip712.sign_typed(CITY.key, typed),
        signer=CITY.address,
    )
    assert reg.decode_events(receipt)[0].args["memberId"] == 2
    assert fields == b"\x0f"


def test_every_type_the_contracts_hash_matches_the_python_table() -> None:
    """A typehash string in Solidity and the TYPES row it is signed with must agree."""
    import re
    from pathlib import Path

    sources = Path(__file__).resolve().parents[2] / "contracts" / "src"
    pattern = re.compile(r'keccak256\(\s*"(\w+)\(([^)]*)\)"\s*\)')
    on_chain = {
        name: fields
        for path in sources.glob("*.sol")
        for name, fields in pattern.findall(path.read_text())
    }
    assert {"ProposeRemoval", "ProposeRotation", "Vote", "AnchorManifest"} <= set(on_chain)
    for name, fields in on_chain.items():
        expected = ",".join(f"{kind} {field}" for field, kind in eip712.TYPES[name])
        assert fields == expected, name
