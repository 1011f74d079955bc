from __future__ import annotations

import pytest
from chain_helpers import CITY, EVE, HARBOUR, LAB, MARY, deploy_registry, free_port
from eth_abi import encode
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError

from chain import eip712, errors
from chain.artifacts import load_artifact
from chain.client import ChainClient
from chain.consortium_registry import ConsortiumRegistry

ABI = load_artifact("ConsortiumRegistry").abi
SELECTORS = {item["name"]: sel for sel, item in errors.error_selectors(ABI).items()}


def _refusals(reg: ConsortiumRegistry) -> list[tuple[str, dict]]:
    """Provoke the same reverts through every path: call, relayer send, raw-key send."""
    seen: list[tuple[str, dict]] = []

    def attempt(thunk) -> None:
        try:
            thunk()
        except errors.ContractError as exc:
            seen.append((type(exc).__name__, exc.args_dict))
        else:
            seen.append(("no revert", {}))

    attempt(lambda: reg.member(42))
    attempt(lambda: reg.vote(1, True))  # the relayer is not a member
    attempt(lambda: reg.propose_removal(1, sender_key=LAB.key))
    typed = reg.application_typed(HARBOUR.address, 1, b"\x03" * 32, b"\x04" * 32)
    bad = eip712.sign_typed(EVE.key, typed)
    attempt(
        lambda: reg.sponsor_admission(
            HARBOUR.address, 1, b"\x03" * 32, b"\x04" * 32, bad, sender_key=MARY.key
        )
    )
    good = eip712.sign_typed(HARBOUR.key, typed)
    receipt = reg.sponsor_admission(
        HARBOUR.address, 1, b"\x03" * 32, b"\x04" * 32, good, sender_key=MARY.key
    )
    pid = reg.proposal_id_from(reg.decode_events(receipt))
    reg.vote(pid, False, sender_key=CITY.key)
    attempt(lambda: reg.vote(pid, True, sender_key=CITY.key))
    attempt(lambda: reg.client.call(reg.contract.functions.vote(pid, True), sender=CITY.address))
    attempt(lambda: reg.vote(pid, True, sender_key=LAB.key))
    return seen


EXPECTED = [
    ("ConsortiumRegistryUnknownMember", {"memberId": 42}),
    ("ConsortiumRegistryNotMember", {"account": "RELAYER"}),
    ("ConsortiumRegistryNotHospital", {"memberId": 4}),
    ("MemberSignedInvalidSignature", {"expected": HARBOUR.address, "recovered": EVE.address}),
    ("QuorumVoteAlreadyVoted", {"proposalId": 1, "memberId": 2}),
    ("QuorumVoteAlreadyVoted", {"proposalId": 1, "memberId": 2}),
    ("QuorumVoteNotEligible", {"proposalId": 1, "memberId": 4}),
]


def test_it_decodes_reverts_identically_on_eth_tester_and_anvil(
    tester_client: ChainClient, anvil_client: ChainClient
) -> None:
    results = []
    for client in (tester_client, anvil_client):
        seen = _refusals(deploy_registry(client))
        results.append(
            [
                (n, {k: ("RELAYER" if v == client.relayer else v) for k, v in a.items()})
                for n, a in seen
            ]
        )
    assert results[0] == results[1] == EXPECTED


def test_it_raises_one_class_per_error_name() -> None:
    cls = errors.lookup("QuorumVoteAlreadyVoted")
    assert cls is errors.lookup("QuorumVoteAlreadyVoted")
    assert issubclass(cls, errors.ContractError) and cls.__name__ == "QuorumVoteAlreadyVoted"
    data = SELECTORS["QuorumVoteAlreadyVoted"] + encode(["uint256", "uint256"], [3, 5])
    exc = errors.decode_data(data, ABI)
    assert isinstance(exc, cls)
    assert exc.args_dict == {"proposalId": 3, "memberId": 5}
    assert str(exc) == "QuorumVoteAlreadyVoted(proposalId=3, memberId=5)"


def _data(name: str, types: list[str], values: list) -> bytes:
    return SELECTORS[name] + encode(types, values)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: TransactionFailed(f"execution reverted: {d!r}"),
        lambda d: ContractCustomError("0x" + d.hex(), data="0x" + d.hex()),
        lambda d: ContractLogicError("execution reverted", data="0x" + d.hex()),
        lambda d: Web3RPCError(
            "execution reverted",
            rpc_response={"jsonrpc": "2.0", "id": 1, "error": {"code": 3, "data": "0x" + d.hex()}},
        ),
    ],
    ids=["eth-tester", "anvil", "logic-error", "json-rpc"],
)
def test_it_decodes_every_node_flavour(make) -> None:
    data = _data("ConsortiumRegistryNotMember", ["address"], [EVE.address])
    decoded = errors.decode_revert(make(data), ABI)
    assert type(decoded).__name__ == "ConsortiumRegistryNotMember"
    assert decoded is not None and decoded.args_dict == {"account": EVE.address}


def test_it_decodes_reason_strings_panics_and_unknown_errors() -> None:
    reason = bytes.fromhex("08c379a0") + encode(["string"], ["nope"])
    assert errors.decode_data(reason, ABI).args_dict == {"message": "nope"}
    assert (
        type(errors.decode_revert(TransactionFailed("execution reverted: nope"), ABI)).__name__
        == "Error"
    )
    panic = errors.decode_data(bytes.fromhex("4e487b71") + encode(["uint256"], [0x11]), ABI)
    assert (type(panic).__name__, panic.args_dict) == ("Panic", {"code": 0x11})
    unknown = errors.decode_data(b"\xde\xad\xbe\xef", ABI)
    assert isinstance(unknown, errors.TransactionReverted)
    assert errors.decode_revert(ValueError("not a revert"), ABI) is None


def test_it_reports_an_unreachable_node() -> None:
    with pytest.raises(errors.ChainUnavailable):
        ChainClient.from_url(f"http://127.0.0.1:{free_port()}", relayer_key=None, timeout=2)


def test_each_error_name_is_one_selector_across_the_contracts() -> None:
    """Prefixed per contract, no name means two different errors in two ABIs."""
    signatures: dict[str, set[str]] = {}
    for name in ("ConsortiumRegistry", "DatasetRegistry"):
        for item in load_artifact(name).abi:
            if item["type"] == "error":
                signatures.setdefault(item["name"], set()).add(errors.error_signature(item))
    assert {n: s for n, s in signatures.items() if len(s) > 1} == {}
    openzeppelin = {"InvalidAccountNonce", "InvalidShortString", "StringTooLong"}
    prefixes = ("ConsortiumRegistry", "DatasetRegistry", "MemberSigned", "QuorumVote")
    assert {n for n in signatures if not n.startswith(prefixes)} == openzeppelin


def test_it_refuses_one_name_for_two_signatures() -> None:
    errors.lookup("SomeContractOops", "SomeContractOops(uint256)")
    with pytest.raises(TypeError, match="SomeContractOops"):
        errors.lookup("SomeContractOops", "SomeContractOops(address)")
