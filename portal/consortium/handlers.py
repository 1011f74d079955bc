"""ConsortiumRegistry events → the membership mirror, from the events' fields alone.

Each handler sets what its event says (never reads a view), so applying the registry's
events in chain order, again and again, ends where the chain is (portal/core/sync.py). An
event about a member or proposal this portal has not mirrored yet is skipped with a
warning: the sync delivers the earlier event first.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.utils import timezone
from eth_utils import to_checksum_address

from chain.events import ChainEvent
from portal.consortium.models import Delegate, Member, Proposal, Vote
from portal.core.chain import REGISTRY
from portal.core.sync import Handler, each

log = logging.getLogger(__name__)


def hex32(value: bytes | str) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else value.lower()


def member_of(member_id: int, event: ChainEvent) -> Member | None:
    """The mirrored member with on-chain id `member_id`, or None (and a warning)."""
    found = Member.objects.filter(chain_member_id=member_id).first()
    if found is None:
        log.warning("%s names member #%s, not mirrored yet: skipped", event.name, member_id)
    return found


def on_member_admitted(event: ChainEvent) -> None:
    a = event.args
    member_id = int(a["memberId"])
    address = to_checksum_address(a["governance"])
    row = (
        Member.objects.filter(chain_member_id=member_id).first()
        or Member.objects.filter(governance_address=address).first()
    )
    if row is None:  # a founder, or admitted outside this portal: mirror what the chain says
        row = Member(name=f"Member #{member_id}", contact_email="unknown@invalid", founding=True)
    row.chain_member_id = member_id
    row.governance_address = address
    row.role = int(a["role"])
    row.data_public_key = hex32(a["dataKey"])
    row.name_hash = hex32(a["nameHash"])
    row.status = Member.Status.ACTIVE
    row.save()


def on_member_removed(event: ChainEvent) -> None:
    member_id = int(event.args["memberId"])
    if member_of(member_id, event) is not None:
        Member.objects.filter(chain_member_id=member_id).update(
            status=Member.Status.REMOVED, updated_at=timezone.now()
        )


def on_governance_rotated(event: ChainEvent) -> None:
    member_id = int(event.args["memberId"])
    if member_of(member_id, event) is not None:
        Member.objects.filter(chain_member_id=member_id).update(
            governance_address=to_checksum_address(event.args["current"]),
            updated_at=timezone.now(),
        )


def _applicant(event: ChainEvent) -> Member:
    """The admission's subject: the applicant's row, made from the event when the
    applicant was sponsored outside this portal."""
    a = event.args
    address = to_checksum_address(a["account"])
    row = Member.objects.filter(governance_address=address).first()
    if row is None:
        row = Member.objects.create(
            name=f"Applicant {address[:10]}",
            contact_email="unknown@invalid",
            governance_address=address,
            role=int(a["role"]),
            data_public_key=hex32(a["dataKey"]),
            name_hash=hex32(a["nameHash"]),
        )
    if row.chain_member_id is None and row.status != Member.Status.PROPOSED:
        row.status = Member.Status.PROPOSED
        row.save(update_fields=["status", "updated_at"])
    return row


def on_proposal_opened(event: ChainEvent) -> None:
    a = event.args
    kind = Proposal.Kind(int(a["kind"]))
    if kind == Proposal.Kind.ADMISSION:
        subject: Member | None = _applicant(event)
    else:
        subject = member_of(int(a["subjectId"]), event)
    if subject is None:
        return
    Proposal.objects.update_or_create(
        chain_proposal_id=int(a["proposalId"]),
        defaults={
            "kind": kind,
            "status": Proposal.Status.OPEN,
            "subject": subject,
            "sponsor": Member.objects.filter(chain_member_id=int(a["sponsorId"])).first(),
            "new_governance_address": (
                to_checksum_address(a["account"]) if kind == Proposal.Kind.ROTATION else ""
            ),
            "eligible": int(a["eligible"]),
            "yes": 0,
            "no": 0,
            "deadline": datetime.fromtimestamp(int(a["deadline"]), tz=UTC),
            "opened_block": event.block_number,
            "decided_block": None,
        },
    )


def _proposal(event: ChainEvent) -> Proposal | None:
    number = int(event.args["proposalId"])
    found = Proposal.objects.select_related("subject").filter(chain_proposal_id=number).first()
    if found is None:
        log.warning("%s names proposal #%s, not mirrored yet: skipped", event.name, number)
    return found


def on_vote_cast(event: ChainEvent) -> None:
    a = event.args
    proposal = _proposal(event)
    voter = member_of(int(a["memberId"]), event)
    if proposal is None or voter is None:
        return
    Proposal.objects.filter(pk=proposal.pk).update(yes=int(a["yes"]), no=int(a["no"]))
    Vote.objects.update_or_create(
        proposal=proposal,
        voter=voter,
        defaults={
            "support": bool(a["support"]),
            "tx_hash": event.tx_hash,
            "block_number": event.block_number,
        },
    )


def on_proposal_decided(event: ChainEvent) -> None:
    a = event.args
    proposal = _proposal(event)
    if proposal is None:
        return
    accepted = bool(a["accepted"])
    proposal.status = Proposal.Status.ACCEPTED if accepted else Proposal.Status.REJECTED
    proposal.yes, proposal.no = int(a["yes"]), int(a["no"])
    proposal.decided_block = event.block_number
    proposal.save(update_fields=["status", "yes", "no", "decided_block"])
    subject = proposal.subject
    if (
        proposal.kind == Proposal.Kind.ADMISSION
        and subject.chain_member_id is None
        and not accepted
        and subject.status != Member.Status.REFUSED
    ):
        subject.status = Member.Status.REFUSED
        subject.save(update_fields=["status", "updated_at"])


def on_delegate_set(event: ChainEvent) -> None:
    a = event.args
    address = to_checksum_address(a["delegate"])
    if not a["enabled"]:
        Delegate.objects.filter(address=address).update(
            enabled=False, updated_block=event.block_number
        )
        return
    member = member_of(int(a["memberId"]), event)
    if member is None:
        return
    Delegate.objects.update_or_create(
        address=address,
        defaults={
            "member": member,
            "scope": int(a["scope"]),
            "enabled": True,
            "updated_block": event.block_number,
        },
    )


MIRRORS: dict[tuple[str, str], Handler] = {
    (REGISTRY, "MemberAdmitted"): each(on_member_admitted),
    (REGISTRY, "MemberRemoved"): each(on_member_removed),
    (REGISTRY, "GovernanceRotated"): each(on_governance_rotated),
    (REGISTRY, "ProposalOpened"): each(on_proposal_opened),
    (REGISTRY, "VoteCast"): each(on_vote_cast),
    (REGISTRY, "ProposalDecided"): each(on_proposal_decided),
    (REGISTRY, "DelegateSet"): each(on_delegate_set),
}
