"""Removal and governance rotation."""

from __future__ import annotations

from registry_helpers import (
    CITY,
    EVE,
    HARBOUR,
    LAB,
    MARY,
    NEWKEY,
    NORTH,
    admit,
    reverts,
    sign,
    sponsor,
)

from chain.consortium_registry import ConsortiumRegistry, ProposalKind, ProposalStatus, Role


def _pass(reg: ConsortiumRegistry, proposal_id: int):
    reg.vote(proposal_id, True, sender_key=MARY.key)
    return reg.vote(proposal_id, True, sender_key=CITY.key)


def _opened(reg: ConsortiumRegistry, receipt) -> int:
    return reg.proposal_id_from(reg.decode_events(receipt))


def test_it_removes_a_member_by_vote(reg: ConsortiumRegistry) -> None:
    receipt = reg.propose_removal(3, sender_key=CITY.key)
    [opened] = reg.decode_events(receipt)
    assert opened.args["kind"] == ProposalKind.REMOVAL
    assert opened.args["account"] == NORTH.address  # the subject's governance at opening
    assert (opened.args["subjectId"], opened.args["role"]) == (3, Role.HOSPITAL)
    assert (opened.args["dataKey"], opened.args["nameHash"]) == (NORTH.data_key, NORTH.name_hash)
    p = reg.proposal(opened.args["proposalId"])
    assert (p.subject_id, p.sponsor_id, p.account) == (3, 2, NORTH.address)
    deciding = _pass(reg, p.id)
    assert [(e.name, e.args) for e in reg.decode_events(deciding)][1:] == [
        ("ProposalDecided", {"proposalId": p.id, "accepted": True, "yes": 2, "no": 0}),
        ("MemberRemoved", {"memberId": 3}),
    ]
    assert not reg.member(3).active
    assert reg.member(3).governance == NORTH.address  # history keeps the last address
    assert reg.member_id_of(NORTH.address) == 0
    assert reg.hospital_count() == 2
    with reverts("ConsortiumRegistryNotMember", account=NORTH.address):
        reg.propose_removal(1, sender_key=NORTH.key)
    with reverts("ConsortiumRegistryMemberInactive", memberId=3):
        reg.propose_removal(3, sender_key=MARY.key)
    # The freed address may be admitted again, as a new member.
    assert admit(reg, NORTH) == 5


def test_it_refuses_bad_removals(reg: ConsortiumRegistry) -> None:
    with reverts("ConsortiumRegistryNotHospital", memberId=4):
        reg.propose_removal(1, sender_key=LAB.key)
    with reverts("ConsortiumRegistryNotMember", account=EVE.address):
        reg.propose_removal(1, sender_key=EVE.key)
    with reverts("ConsortiumRegistryUnknownMember", memberId=99):
        reg.propose_removal(99, sender_key=MARY.key)
    first = _opened(reg, reg.propose_removal(4, sender_key=MARY.key))
    with reverts("ConsortiumRegistryChangePending", memberId=4, proposalId=first):
        reg.propose_removal(4, sender_key=CITY.key)
    with reverts("ConsortiumRegistryChangePending", memberId=4, proposalId=first):
        reg.propose_rotation(4, NEWKEY.address, sender_key=LAB.key)


def test_it_rotates_a_governance_address_by_vote(reg: ConsortiumRegistry) -> None:
    receipt = reg.propose_rotation(4, NEWKEY.address, sender_key=LAB.key)  # the member itself
    proposal_id = _opened(reg, receipt)
    p = reg.proposal(proposal_id)
    assert (p.kind, p.subject_id, p.account, p.sponsor_id) == (
        ProposalKind.ROTATION,
        4,
        NEWKEY.address,
        4,
    )
    with reverts(
        "ConsortiumRegistryAddressPending", account=NEWKEY.address, proposalId=proposal_id
    ):
        sponsor(reg, NEWKEY)
    deciding = _pass(reg, proposal_id)
    assert reg.decode_events(deciding)[-1].args == {
        "memberId": 4,
        "previous": LAB.address,
        "current": NEWKEY.address,
    }
    assert reg.decode_events(deciding)[-1].name == "GovernanceRotated"
    assert reg.member(4).governance == NEWKEY.address
    assert reg.member_id_of(NEWKEY.address) == 4
    assert reg.member_id_of(LAB.address) == 0
    with reverts("ConsortiumRegistryNotMember", account=LAB.address):
        reg.set_delegate(EVE.address, 1, True, sender_key=LAB.key)
    reg.set_delegate(EVE.address, 1, True, sender_key=NEWKEY.key)


def test_it_lets_a_rotated_hospital_keep_voting(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    rotation = _opened(reg, reg.propose_rotation(3, NEWKEY.address, sender_key=MARY.key))
    _pass(reg, rotation)
    reg.vote(proposal_id, True, sender_key=NEWKEY.key)
    assert reg.ballot_of(proposal_id, 3) is True


def test_it_refuses_bad_rotations(reg: ConsortiumRegistry) -> None:
    with reverts("ConsortiumRegistryNotHospital", memberId=4):
        reg.propose_rotation(1, NEWKEY.address, sender_key=LAB.key)
    with reverts("ConsortiumRegistryAddressInUse", account=CITY.address):
        reg.propose_rotation(1, CITY.address, sender_key=MARY.key)
    with reverts("ConsortiumRegistryInvalidAddress", account="0x" + "00" * 20):
        reg.propose_rotation(1, "0x" + "00" * 20, sender_key=MARY.key)
    admission = sponsor(reg, HARBOUR)
    with reverts("ConsortiumRegistryAddressPending", account=HARBOUR.address, proposalId=admission):
        reg.propose_rotation(1, HARBOUR.address, sender_key=MARY.key)
    reg.set_delegate(EVE.address, 2, True, sender_key=CITY.key)
    with reverts("ConsortiumRegistryAddressInUse", account=EVE.address):
        reg.propose_rotation(1, EVE.address, sender_key=MARY.key)


def test_it_frees_a_rejected_rotation_target(reg: ConsortiumRegistry) -> None:
    rotation = _opened(reg, reg.propose_rotation(1, NEWKEY.address, sender_key=MARY.key))
    reg.vote(rotation, False, sender_key=CITY.key)
    reg.vote(rotation, False, sender_key=NORTH.key)
    assert reg.proposal(rotation).status == ProposalStatus.REJECTED
    assert sponsor(reg, NEWKEY) == rotation + 1


def test_it_opens_a_removal_relayed_with_the_proposers_signature(reg: ConsortiumRegistry) -> None:
    typed = reg.propose_removal_typed(CITY.address, 3)
    assert typed["primaryType"] == "ProposeRemoval"
    with reverts("MemberSignedInvalidSignature", expected=CITY.address, recovered=EVE.address):
        reg.send_signed("ProposeRemoval", {"memberId": 3}, sign(EVE, typed), signer=CITY.address)
    receipt = reg.send_signed(
        "ProposeRemoval", {"memberId": 3}, sign(CITY, typed), signer=CITY.address
    )
    p = reg.proposal(_opened(reg, receipt))
    assert (p.kind, p.subject_id, p.sponsor_id) == (ProposalKind.REMOVAL, 3, 2)
    assert reg.nonce(CITY.address) == 1
    _pass(reg, p.id)
    assert not reg.member(3).active
    # A signature is good once: its nonce is spent.
    spent = {**typed, "message": {**typed["message"], "nonce": reg.nonce(CITY.address)}}
    with reverts(
        "MemberSignedInvalidSignature",
        expected=CITY.address,
        recovered=_recovered(spent, sign(CITY, typed)),
    ):
        reg.send_signed("ProposeRemoval", {"memberId": 3}, sign(CITY, typed), signer=CITY.address)


def test_it_refuses_a_relayed_removal_from_a_non_hospital(reg: ConsortiumRegistry) -> None:
    typed = reg.propose_removal_typed(LAB.address, 1)
    with reverts("ConsortiumRegistryNotHospital", memberId=4):
        reg.send_signed("ProposeRemoval", {"memberId": 1}, sign(LAB, typed), signer=LAB.address)
    typed = reg.propose_removal_typed(EVE.address, 1)
    with reverts("ConsortiumRegistryNotMember", account=EVE.address):
        reg.send_signed("ProposeRemoval", {"memberId": 1}, sign(EVE, typed), signer=EVE.address)


def test_it_opens_a_rotation_relayed_for_the_member_itself(reg: ConsortiumRegistry) -> None:
    typed = reg.propose_rotation_typed(LAB.address, 4, NEWKEY.address)
    assert typed["message"]["newGovernance"] == NEWKEY.address
    wrong = reg.propose_rotation_typed(LAB.address, 4, HARBOUR.address)
    swapped = _recovered(typed, sign(LAB, wrong))
    with reverts("MemberSignedInvalidSignature", expected=LAB.address, recovered=swapped):
        # Signed for another new address: the relayer cannot swap the target.
        reg.send_signed(
            "ProposeRotation",
            {"memberId": 4, "newGovernance": NEWKEY.address},
            sign(LAB, wrong),
            signer=LAB.address,
        )
    receipt = reg.send_signed(
        "ProposeRotation",
        {"memberId": 4, "newGovernance": NEWKEY.address},
        sign(LAB, typed),
        signer=LAB.address,
    )
    proposal_id = _opened(reg, receipt)
    assert reg.proposal(proposal_id).account == NEWKEY.address
    _pass(reg, proposal_id)
    assert reg.member(4).governance == NEWKEY.address


def test_it_refuses_a_relayed_rotation_to_an_address_in_use(reg: ConsortiumRegistry) -> None:
    typed = reg.propose_rotation_typed(MARY.address, 1, CITY.address)
    with reverts("ConsortiumRegistryAddressInUse", account=CITY.address):
        reg.send_signed(
            "ProposeRotation",
            {"memberId": 1, "newGovernance": CITY.address},
            sign(MARY, typed),
            signer=MARY.address,
        )


def _recovered(typed, signature: bytes) -> str:
    """Whom ``signature`` recovers to over ``typed``, as the contract computes it."""
    from chain import eip712

    return eip712.recover_typed(typed, signature)
