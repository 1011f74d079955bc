"""Chain events → the membership mirror. Each handler re-reads the chain's
current view of what the event names, so re-delivery is harmless."""

from __future__ import annotations

from datetime import UTC, datetime

from eth_utils import to_checksum_address

from chain.registry import ChainEvent
from portal.consortium.models import Delegate, Member, Proposal, Vote
from portal.core import chain as portal_chain
from portal.core.sync import handles

_ZERO = "0x" + "0" * 40


def _hex32(value: bytes | str) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else value


def member_mirror(member_id: int) -> Member | None:
    """Make the Member row for on-chain member `member_id` say what the chain says."""
    if member_id == 0:
        return None
    view = portal_chain.registry().member(member_id)
    address = to_checksum_address(view.governance)
    row = Member.objects.filter(chain_member_id=member_id).first()
    if row is None:
        row = Member.objects.filter(governance_address=address).first()
    if row is None:
        row = Member(name=f"Member #{member_id}", contact_email="unknown@invalid", founding=True)
    row.chain_member_id = member_id
    row.governance_address = address
    row.role = view.role
    row.data_public_key = _hex32(view.data_key)
    row.name_hash = _hex32(view.name_hash)
    row.status = Member.Status.ACTIVE if view.active else Member.Status.REMOVED
    row.save()
    return row


def proposal_mirror(proposal_id: int, event: ChainEvent) -> Proposal:
    view = portal_chain.registry().proposal(proposal_id)
    kind = Proposal.Kind(view.kind)
    if kind == Proposal.Kind.ADMISSION:
        address = to_checksum_address(view.account)
        subject = Member.objects.filter(governance_address=address).first()
        if subject is None:  # sponsored outside this portal: mirror what the chain knows
            subject = Member.objects.create(
                name=f"Applicant {address[:10]}",
                contact_email="unknown@invalid",
                governance_address=address,
                role=view.role,
                data_public_key=_hex32(view.data_key),
                name_hash=_hex32(view.name_hash),
            )
    else:
        subject = member_mirror(view.subject_id) or Member.objects.get(
            chain_member_id=view.subject_id
        )
    sponsor = Member.objects.filter(chain_member_id=view.sponsor_id).first()
    proposal, _ = Proposal.objects.update_or_create(
        chain_proposal_id=proposal_id,
        defaults={
            "kind": kind,
            "status": view.status,
            "subject": subject,
            "sponsor": sponsor,
            "new_governance_address": (
                to_checksum_address(view.account) if kind == Proposal.Kind.ROTATION else ""
            ),
            "eligible": view.eligible,
            "yes": view.yes,
            "no": view.no,
            "deadline": datetime.fromtimestamp(view.deadline, tz=UTC),
        },
    )
    if event.name == "ProposalOpened" and not proposal.opened_block:
        proposal.opened_block = event.block_number
        proposal.save(update_fields=["opened_block"])
    if kind == Proposal.Kind.ADMISSION and subject.chain_member_id is None:
        status = {
            Proposal.Status.OPEN: Member.Status.PROPOSED,
            Proposal.Status.REJECTED: Member.Status.REFUSED,
        }.get(Proposal.Status(view.status))
        if status is not None and subject.status != status:
            subject.status = status
            subject.save(update_fields=["status", "updated_at"])
    return proposal


@handles("MemberAdmitted", "MemberRemoved", "GovernanceRotated")
def on_member_changed(event: ChainEvent) -> None:
    member_mirror(int(event.args["memberId"]))


@handles("ProposalOpened", "ProposalDecided")
def on_proposal_changed(event: ChainEvent) -> None:
    proposal = proposal_mirror(int(event.args["proposalId"]), event)
    if event.name == "ProposalDecided" and proposal.decided_block is None:
        proposal.decided_block = event.block_number
        proposal.save(update_fields=["decided_block"])


@handles("VoteCast")
def on_vote_cast(event: ChainEvent) -> None:
    proposal = proposal_mirror(int(event.args["proposalId"]), event)
    voter = Member.objects.filter(chain_member_id=int(event.args["memberId"])).first()
    if voter is None:
        voter = member_mirror(int(event.args["memberId"]))
    assert voter is not None
    Vote.objects.update_or_create(
        proposal=proposal,
        voter=voter,
        defaults={
            "support": bool(event.args["support"]),
            "tx_hash": event.tx_hash,
            "block_number": event.block_number,
        },
    )


@handles("DelegateSet")
def on_delegate_set(event: ChainEvent) -> None:
    member = Member.objects.filter(chain_member_id=int(event.args["memberId"])).first()
    if member is None:
        member = member_mirror(int(event.args["memberId"]))
    assert member is not None
    address = to_checksum_address(event.args["delegate"])
    member_id, scope = portal_chain.registry().delegate_of(address)
    if member_id == 0 or address == _ZERO:
        Delegate.objects.filter(address=address).update(enabled=False)
        return
    Delegate.objects.update_or_create(
        address=address,
        defaults={
            "member": member,
            "scope": scope,
            "enabled": True,
            "updated_block": event.block_number,
        },
    )
