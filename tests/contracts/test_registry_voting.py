from __future__ import annotations

from registry_helpers import (
    CITY,
    EVE,
    HARBOUR,
    LAB,
    MARY,
    NEWKEY,
    NORTH,
    VOTING_PERIOD,
    admit,
    advance,
    reverts,
    sign,
    sponsor,
)

from chain import eip712
from chain.consortium_registry import ConsortiumRegistry, ProposalStatus

ZERO = "0x" + "00" * 20


def test_it_refuses_a_double_vote(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    reg.vote(proposal_id, False, sender_key=MARY.key)
    with reverts("QuorumVoteAlreadyVoted", proposalId=proposal_id, memberId=1):
        reg.vote(proposal_id, True, sender_key=MARY.key)
    assert reg.ballot_of(proposal_id, 1) is False
    assert reg.ballot_of(proposal_id, 2) is None


def test_it_refuses_votes_from_non_members_and_servers(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    with reverts("ConsortiumRegistryNotMember", account=EVE.address):
        reg.vote(proposal_id, True, sender_key=EVE.key)
    with reverts("QuorumVoteNotEligible", proposalId=proposal_id, memberId=4):
        reg.vote(proposal_id, True, sender_key=LAB.key)


def test_it_refuses_votes_from_members_admitted_after_the_opening(reg: ConsortiumRegistry) -> None:
    earlier = sponsor(reg, EVE)
    harbour_id = admit(reg, HARBOUR)
    assert reg.proposal(earlier).eligible == 3
    with reverts("QuorumVoteNotEligible", proposalId=earlier, memberId=harbour_id):
        reg.vote(earlier, True, sender_key=HARBOUR.key)
    later = sponsor(reg, NEWKEY)
    assert reg.proposal(later).eligible == 4
    reg.vote(later, True, sender_key=HARBOUR.key)


def test_it_refuses_votes_from_removed_members(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    removal = reg.proposal_id_from(reg.decode_events(reg.propose_removal(3, sender_key=MARY.key)))
    reg.vote(removal, True, sender_key=MARY.key)
    reg.vote(removal, True, sender_key=CITY.key)
    with reverts("ConsortiumRegistryNotMember", account=NORTH.address):
        reg.vote(proposal_id, True, sender_key=NORTH.key)


def test_it_refuses_votes_after_the_decision(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    reg.vote(proposal_id, True, sender_key=MARY.key)
    reg.vote(proposal_id, True, sender_key=CITY.key)
    with reverts(
        "QuorumVoteProposalClosed", proposalId=proposal_id, status=ProposalStatus.ACCEPTED
    ):
        reg.vote(proposal_id, False, sender_key=NORTH.key)
    with reverts(
        "QuorumVoteProposalClosed", proposalId=proposal_id, status=ProposalStatus.ACCEPTED
    ):
        reg.finalize(proposal_id)


def test_it_refuses_votes_after_the_deadline_and_finalizes(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    deadline = reg.proposal(proposal_id).deadline
    reg.vote(proposal_id, True, sender_key=MARY.key)
    with reverts("QuorumVoteProposalNotExpired", proposalId=proposal_id, deadline=deadline):
        reg.finalize(proposal_id)
    assert reg.state(proposal_id) == ProposalStatus.OPEN
    advance(reg.client, VOTING_PERIOD + 1)
    with reverts("QuorumVoteProposalExpired", proposalId=proposal_id, deadline=deadline):
        reg.vote(proposal_id, True, sender_key=CITY.key)
    # Derived from the clock, as OpenZeppelin's Governor: expired before anyone finalizes.
    assert reg.state(proposal_id) == ProposalStatus.EXPIRED
    assert reg.proposal(proposal_id).status == ProposalStatus.OPEN
    receipt = reg.finalize(proposal_id, sender_key=EVE.key)  # anyone may
    assert [(e.name, e.args) for e in reg.decode_events(receipt)] == [
        ("ProposalDecided", {"proposalId": proposal_id, "accepted": False, "yes": 1, "no": 0})
    ]
    assert reg.proposal(proposal_id).status == reg.state(proposal_id) == ProposalStatus.REJECTED
    with reverts(
        "QuorumVoteProposalClosed", proposalId=proposal_id, status=ProposalStatus.REJECTED
    ):
        reg.finalize(proposal_id)
    assert sponsor(reg, HARBOUR) == proposal_id + 1  # no longer pending


def test_it_refuses_unknown_proposals(reg: ConsortiumRegistry) -> None:
    with reverts("QuorumVoteUnknownProposal", proposalId=7):
        reg.vote(7, True, sender_key=MARY.key)
    with reverts("QuorumVoteUnknownProposal", proposalId=0):
        reg.proposal(0)
    with reverts("ConsortiumRegistryUnknownMember", memberId=9):
        reg.member(9)


def test_it_counts_a_relayed_vote(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    typed = reg.vote_typed(proposal_id, True, CITY.address)
    receipt = reg.send_signed(
        "Vote",
        {"proposalId": proposal_id, "support": True, "voter": CITY.address},
        sign(CITY, typed),
        signer=CITY.address,
        sender_key=EVE.key,
    )
    [cast] = reg.decode_events(receipt)
    assert cast.args == {"proposalId": 1, "memberId": 2, "support": True, "yes": 1, "no": 0}
    assert reg.nonce(CITY.address) == 1


def test_it_refuses_forged_and_replayed_vote_signatures(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    typed = reg.vote_typed(proposal_id, True, CITY.address)
    with reverts("MemberSignedInvalidSignature", expected=CITY.address, recovered=EVE.address):
        reg.send_signed(
            "Vote",
            {"proposalId": proposal_id, "support": True, "voter": CITY.address},
            sign(EVE, typed),
            signer=CITY.address,
        )
    flipped = reg.vote_typed(proposal_id, False, CITY.address)  # signed yes, relayed as no
    signature = sign(CITY, typed)
    assert eip712.recover_typed(flipped, signature) != CITY.address
    try:
        reg.send_signed(
            "Vote",
            {"proposalId": proposal_id, "support": False, "voter": CITY.address},
            signature,
            signer=CITY.address,
        )
    except Exception as exc:
        assert type(exc).__name__ == "MemberSignedInvalidSignature"
        assert exc.args_dict == {  # type: ignore[attr-defined]
            "expected": CITY.address,
            "recovered": eip712.recover_typed(flipped, signature),
        }
    else:
        raise AssertionError("a vote flipped by the relayer was accepted")
    reg.send_signed(
        "Vote",
        {"proposalId": proposal_id, "support": True, "voter": CITY.address},
        signature,
        signer=CITY.address,
    )
    # The same signature again: the nonce moved on, so it recovers to someone else.
    replay_signer = eip712.recover_typed(reg.vote_typed(proposal_id, True, CITY.address), signature)
    with reverts("MemberSignedInvalidSignature", expected=CITY.address, recovered=replay_signer):
        reg.send_signed(
            "Vote",
            {"proposalId": proposal_id, "support": True, "voter": CITY.address},
            signature,
            signer=CITY.address,
        )


def test_it_refuses_signatures_for_another_chain_or_contract(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    chain_id, nonce = reg.client.chain_id, reg.nonce(CITY.address)
    for other_chain, other_contract in ((1, reg.address), (chain_id, "0x" + "42" * 20)):
        typed = eip712.typed_for(
            "Vote",
            other_chain,
            other_contract,
            proposal_id=proposal_id,
            support=True,
            voter=CITY.address,
            nonce=nonce,
        )
        signature = sign(CITY, typed)
        here = eip712.recover_typed(reg.vote_typed(proposal_id, True, CITY.address), signature)
        with reverts("MemberSignedInvalidSignature", expected=CITY.address, recovered=here):
            reg.send_signed(
                "Vote",
                {"proposalId": proposal_id, "support": True, "voter": CITY.address},
                signature,
                signer=CITY.address,
            )
    assert reg.nonce(CITY.address) == nonce


def test_it_refuses_malformed_signatures(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    with reverts("MemberSignedInvalidSignature", expected=CITY.address, recovered=ZERO):
        reg.send_signed(
            "Vote",
            {"proposalId": proposal_id, "support": True, "voter": CITY.address},
            b"\x00" * 65,
            signer=CITY.address,
        )


def test_it_applies_the_quorum_to_the_snapshot_of_eligible_hospitals(
    reg: ConsortiumRegistry,
) -> None:
    harbour_id = admit(reg, HARBOUR)  # 4 hospitals now: 5000 bps needs 3 yes votes
    proposal_id = sponsor(reg, EVE)
    assert reg.proposal(proposal_id).eligible == 4
    reg.vote(proposal_id, True, sender_key=MARY.key)
    reg.vote(proposal_id, True, sender_key=HARBOUR.key)
    assert reg.proposal(proposal_id).status == ProposalStatus.OPEN
    reg.vote(proposal_id, False, sender_key=CITY.key)
    assert reg.proposal(proposal_id).status == ProposalStatus.OPEN  # NORTH can still pass it
    reg.vote(proposal_id, True, sender_key=NORTH.key)
    p = reg.proposal(proposal_id)
    assert (p.status, p.yes, p.no) == (ProposalStatus.ACCEPTED, 3, 1)
    assert reg.member(reg.member_id_of(EVE.address)).joined_epoch == 2
    assert harbour_id == 5
