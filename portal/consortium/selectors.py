"""Reads that depend on who is asking. Permission rules live here, once."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from portal.consortium.models import Invitation, Member, Proposal, Staff


def staff_of(user: AbstractBaseUser | AnonymousUser) -> Staff | None:
    if not user.is_authenticated:
        return None
    return Staff.objects.select_related("member").filter(user_id=user.pk).first()


def member_of(user: AbstractBaseUser | AnonymousUser) -> Member | None:
    staff = staff_of(user)
    return staff.member if staff else None


def is_consortium_member(user: AbstractBaseUser | AnonymousUser) -> bool:
    member = member_of(user)
    return member is not None and member.is_active


def member_list(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Member]:
    """Active members see every member and applicant; anyone else sees only their own."""
    if is_consortium_member(viewer):
        return Member.objects.all()
    own = member_of(viewer)
    return Member.objects.filter(pk=own.pk) if own else Member.objects.none()


def proposal_list(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Proposal]:
    base = Proposal.objects.select_related("subject", "sponsor").prefetch_related("votes__voter")
    if is_consortium_member(viewer):
        return base
    own = member_of(viewer)
    return base.filter(subject=own) if own else base.none()


def pending_change(*, member: Member) -> Proposal | None:
    """The member's undecided removal or rotation; the contract allows one at a time."""
    return (
        Proposal.objects.filter(
            subject=member,
            kind__in=[Proposal.Kind.REMOVAL, Proposal.Kind.ROTATION],
            status=Proposal.Status.OPEN,
        )
        .order_by("-chain_proposal_id")
        .first()
    )


def pending_changes(*, viewer: AbstractBaseUser | AnonymousUser) -> dict[int, int]:
    """Member pk → number of its undecided removal or rotation, among what the viewer sees."""
    rows = proposal_list(viewer=viewer).filter(
        kind__in=[Proposal.Kind.REMOVAL, Proposal.Kind.ROTATION], status=Proposal.Status.OPEN
    )
    return dict(rows.values_list("subject_id", "chain_proposal_id"))


def applications_awaiting_sponsor(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Member]:
    return member_list(viewer=viewer).filter(status=Member.Status.APPLIED)


def staff_list(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Staff]:
    own = staff_of(viewer)
    if own is None:
        return Staff.objects.none()
    return Staff.objects.select_related("user").filter(member=own.member)


def invitation_list(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Invitation]:
    own = staff_of(viewer)
    if own is None or own.role != Staff.Role.ADMIN:
        return Invitation.objects.none()
    return Invitation.objects.filter(member=own.member)
