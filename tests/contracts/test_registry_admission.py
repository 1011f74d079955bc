from __future__ import annotations

import pytest
from registry_helpers import (
    CITY,
    EVE,
    HARBOUR,
    LAB,
    MARY,
    NORTH,
    QUORUM_BPS,
    VOTING_PERIOD,
    application_signature,
    deploy,
    reverts,
    sign,
    sponsor,
)

from chain.client import ChainClient
from chain.consortium_registry import (
    ConsortiumRegistry,
    Founder,
    ProposalKind,
    ProposalStatus,
    Role,
)


def test_it_sets_up_the_founders(reg: ConsortiumRegistry) -> None:
    assert reg.member_count() == 4
    assert reg.hospital_count() == 3
    assert reg.quorum_bps() == QUORUM_BPS
    assert reg.voting_period() == VOTING_PERIOD
    assert reg.proposal_count() == 0
    lab = reg.member(4)
    assert (lab.governance, lab.role, lab.data_key, lab.name_hash) == (
        LAB.address,
        Role.DIAGNOSTIC_SERVER,
        LAB.data_key,
        LAB.name_hash,
    )
    assert lab.active and lab.joined_epoch == 0
    assert [reg.member_id_of(p.address) for p in (MARY, CITY, NORTH, LAB, EVE)] == [1, 2, 3, 4, 0]


@pytest.mark.parametrize(
    ("roles", "quorum", "period", "error"),
    [
        ([1, 2], 0, 60, "QuorumVoteInvalidRules"),
        ([1, 2], 10_000, 60, "QuorumVoteInvalidRules"),
        ([1, 2], 5000, 0, "QuorumVoteInvalidRules"),
        ([2, 2], 5000, 60, "ConsortiumRegistryInvalidConfiguration"),  # no hospital
    ],
)
def test_it_refuses_a_bad_configuration(
    deployment, roles: list[int], quorum: int, period: int, error: str
) -> None:
    founders = [
        Founder(p.address, role, p.data_key, p.name_hash)
        for p, role in zip((MARY, CITY), roles, strict=True)
    ]
    args = (
        {"quorumBps": quorum, "votingPeriod": period} if error == "QuorumVoteInvalidRules" else {}
    )
    with reverts(error, **args):
        ConsortiumRegistry.deploy(
            deployment.client, founders=founders, quorum_bps=quorum, voting_period=period
        )


def test_it_refuses_bad_founders(deployment) -> None:
    def founders(*rows: tuple[str, int]) -> list[Founder]:
        return [Founder(a, r, b"\x01" * 32, b"\x02" * 32) for a, r in rows]

    client: ChainClient = deployment.client
    with reverts("ConsortiumRegistryInvalidRole", role=3):
        ConsortiumRegistry.deploy(
            client, founders=founders((MARY.address, 3)), quorum_bps=5000, voting_period=60
        )
    with reverts("ConsortiumRegistryAddressInUse", account=MARY.address):
        ConsortiumRegistry.deploy(
            client,
            founders=founders((MARY.address, 1), (MARY.address, 1)),
            quorum_bps=5000,
            voting_period=60,
        )
    with reverts("ConsortiumRegistryInvalidAddress", account="0x" + "00" * 20):
        ConsortiumRegistry.deploy(
            client, founders=founders(("0x" + "00" * 20, 1)), quorum_bps=5000, voting_period=60
        )


def test_it_opens_an_admission_proposal(reg: ConsortiumRegistry) -> None:
    sig = application_signature(reg, HARBOUR)
    receipt = reg.sponsor_admission(
        HARBOUR.address, 1, HARBOUR.data_key, HARBOUR.name_hash, sig, sender_key=CITY.key
    )
    [opened] = reg.decode_events(receipt)
    deadline = reg.client.w3.eth.get_block(receipt["blockNumber"])["timestamp"] + VOTING_PERIOD
    assert opened.name == "ProposalOpened"
    assert opened.args == {
        "proposalId": 1,
        "kind": ProposalKind.ADMISSION,
        "sponsorId": 2,
        "subjectId": 0,
        "account": HARBOUR.address,
        "role": Role.HOSPITAL,
        "dataKey": HARBOUR.data_key,
        "nameHash": HARBOUR.name_hash,
        "epoch": 0,
        "eligible": 3,
        "deadline": deadline,
    }
    p = reg.proposal(1)
    assert (p.kind, p.status, p.subject_id, p.account, p.role) == (
        ProposalKind.ADMISSION,
        ProposalStatus.OPEN,
        0,
        HARBOUR.address,
        Role.HOSPITAL,
    )
    assert (p.data_key, p.name_hash, p.sponsor_id, p.epoch) == (
        HARBOUR.data_key,
        HARBOUR.name_hash,
        2,
        0,
    )
    assert (p.eligible, p.yes, p.no, p.deadline) == (3, 0, 0, deadline)
    assert reg.nonce(HARBOUR.address) == 1  # the application's nonce is consumed
    assert reg.proposal_count() == 1


def test_it_admits_on_the_deciding_vote(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR, role=Role.DIAGNOSTIC_SERVER)
    first = reg.vote(proposal_id, True, sender_key=MARY.key)
    assert [(e.name, e.args) for e in reg.decode_events(first)] == [
        ("VoteCast", {"proposalId": 1, "memberId": 1, "support": True, "yes": 1, "no": 0})
    ]
    deciding = reg.vote(proposal_id, True, sender_key=NORTH.key)
    assert [(e.name, e.args) for e in reg.decode_events(deciding)] == [
        ("VoteCast", {"proposalId": 1, "memberId": 3, "support": True, "yes": 2, "no": 0}),
        ("ProposalDecided", {"proposalId": 1, "accepted": True, "yes": 2, "no": 0}),
        (
            "MemberAdmitted",
            {
                "memberId": 5,
                "governance": HARBOUR.address,
                "role": 2,
                "dataKey": HARBOUR.data_key,
                "nameHash": HARBOUR.name_hash,
                "joinedEpoch": 1,
            },
        ),
    ]
    assert reg.proposal(proposal_id).status == ProposalStatus.ACCEPTED
    member = reg.member(5)
    assert (member.governance, member.role, member.active, member.joined_epoch) == (
        HARBOUR.address,
        Role.DIAGNOSTIC_SERVER,
        True,
        1,
    )
    assert reg.member_id_of(HARBOUR.address) == 5
    assert reg.hospital_count() == 3  # a diagnostic server is not a hospital


def test_it_rejects_as_soon_as_the_quorum_is_out_of_reach(reg: ConsortiumRegistry) -> None:
    proposal_id = sponsor(reg, HARBOUR)
    reg.vote(proposal_id, False, sender_key=MARY.key)
    receipt = reg.vote(proposal_id, False, sender_key=CITY.key)
    assert [e.name for e in reg.decode_events(receipt)] == ["VoteCast", "ProposalDecided"]
    assert reg.decode_events(receipt)[1].args == {
        "proposalId": 1,
        "accepted": False,
        "yes": 0,
        "no": 2,
    }
    assert reg.proposal(proposal_id).status == ProposalStatus.REJECTED
    assert reg.member_id_of(HARBOUR.address) == 0
    # The applicant may apply again (with a fresh nonce).
    assert sponsor(reg, HARBOUR) == 2


def test_it_refuses_sponsors_who_are_not_hospitals(reg: ConsortiumRegistry) -> None:
    sig = application_signature(reg, HARBOUR)
    args = (HARBOUR.address, 1, HARBOUR.data_key, HARBOUR.name_hash, sig)
    with reverts("ConsortiumRegistryNotHospital", memberId=4):
        reg.sponsor_admission(*args, sender_key=LAB.key)
    with reverts("ConsortiumRegistryNotMember", account=EVE.address):
        reg.sponsor_admission(*args, sender_key=EVE.key)


def test_it_refuses_an_application_not_signed_by_the_applicant(reg: ConsortiumRegistry) -> None:
    typed = reg.application_typed(HARBOUR.address, 1, HARBOUR.data_key, HARBOUR.name_hash)
    with reverts("MemberSignedInvalidSignature", expected=HARBOUR.address, recovered=EVE.address):
        reg.sponsor_admission(
            HARBOUR.address,
            1,
            HARBOUR.data_key,
            HARBOUR.name_hash,
            sign(EVE, typed),
            sender_key=MARY.key,
        )
    other_key = HARBOUR.data_key[::-1]  # signed one key, submitted another
    sig = application_signature(reg, HARBOUR)
    with pytest.raises(Exception) as info:
        reg.sponsor_admission(
            HARBOUR.address, 1, other_key, HARBOUR.name_hash, sig, sender_key=MARY.key
        )
    assert type(info.value).__name__ == "MemberSignedInvalidSignature"
    assert info.value.args_dict["expected"] == HARBOUR.address  # type: ignore[attr-defined]
    with reverts(
        "MemberSignedInvalidSignature", expected=HARBOUR.address, recovered="0x" + "00" * 20
    ):
        reg.sponsor_admission(
            HARBOUR.address,
            1,
            HARBOUR.data_key,
            HARBOUR.name_hash,
            b"\x01" * 3,
            sender_key=MARY.key,
        )


def test_it_refuses_members_pending_applicants_and_bad_roles(reg: ConsortiumRegistry) -> None:
    with reverts("ConsortiumRegistryAddressInUse", account=CITY.address):
        sponsor(reg, CITY)
    proposal_id = sponsor(reg, HARBOUR)
    with reverts(
        "ConsortiumRegistryAddressPending", account=HARBOUR.address, proposalId=proposal_id
    ):
        sponsor(reg, HARBOUR, by=CITY)
    with reverts("ConsortiumRegistryInvalidRole", role=0):
        sponsor(reg, EVE, role=0)
    with reverts("ConsortiumRegistryInvalidRole", role=3):
        sponsor(reg, EVE, role=3)


def test_it_sponsors_by_relayed_signatures(reg: ConsortiumRegistry) -> None:
    app_sig = application_signature(reg, HARBOUR)
    typed = reg.sponsor_typed(MARY.address, HARBOUR.address, 1, HARBOUR.data_key, HARBOUR.name_hash)
    message, unsigned = typed["message"], {"applicantSignature": app_sig}

    def relay(signature: bytes):
        return reg.send_signed(
            "SponsorAdmission", message, signature, signer=MARY.address, unsigned=unsigned
        )

    with reverts("MemberSignedInvalidSignature", expected=MARY.address, recovered=EVE.address):
        relay(sign(EVE, typed))
    receipt = relay(sign(MARY, typed))
    [opened] = reg.decode_events(receipt)
    assert opened.args["sponsorId"] == 1 and opened.args["account"] == HARBOUR.address
    assert reg.nonce(MARY.address) == 1
    # A relayed sponsor must still be an active hospital.
    typed = reg.sponsor_typed(LAB.address, EVE.address, 1, EVE.data_key, EVE.name_hash)
    with reverts("ConsortiumRegistryNotHospital", memberId=4):
        reg.send_signed(
            "SponsorAdmission",
            {
                "applicant": EVE.address,
                "role": 1,
                "dataKey": EVE.data_key,
                "nameHash": EVE.name_hash,
            },
            sign(LAB, typed),
            signer=LAB.address,
            unsigned={"applicantSignature": application_signature(reg, EVE)},
        )


def test_it_counts_only_the_hospitals_at_opening(deployment) -> None:
    """At 6700 bps of 3 hospitals, 2 yes votes are not enough (20000 > 20100 fails)."""
    fresh = deploy(deployment.client, quorum_bps=6700)
    proposal_id = sponsor(fresh, HARBOUR)
    fresh.vote(proposal_id, True, sender_key=MARY.key)
    fresh.vote(proposal_id, True, sender_key=CITY.key)
    assert fresh.proposal(proposal_id).status == ProposalStatus.OPEN
    fresh.vote(proposal_id, True, sender_key=NORTH.key)
    assert fresh.proposal(proposal_id).status == ProposalStatus.ACCEPTED
