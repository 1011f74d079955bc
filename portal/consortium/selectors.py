"""Reads that depend on who is asking. Permission rules live here, once."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, QuerySet

from portal.consortium.models import Invitation, Member, Proposal, Staff, Vote
from portal.core.exceptions import Forbidden
from portal.core.prepared import PreparedMatches, PreparedRows

Viewer = AbstractBaseUser | AnonymousUser
#: where Django keeps the user's reverse one-to-one ``user.staff``
STAFF_CACHE = Staff.user.field.remote_field.cache_name


def staff_of(user: AbstractBaseUser | AnonymousUser) -> Staff | None:
    """The user's staff row with its member, read once per user object.

    A request's user is loaded afresh for each request, so the row is read once per
    request however many permissions and selectors ask; the token lookup reads it with the
    token (``select_related("user__staff__member")``) and this reads nothing at all. The
    answer is kept where Django keeps ``user.staff`` (a reverse one-to-one), so a staff row
    created for the same user object replaces it, as it does for ``user.staff``.
    """
    if not user.is_authenticated:
        return None
    cache = user._state.fields_cache  # type: ignore[union-attr]
    if STAFF_CACHE in cache:
        cached = cache[STAFF_CACHE]
        if cached is None or (isinstance(cached, Staff) and Staff.member.is_cached(cached)):
            return cached
    staff = Staff.objects.select_related("member").filter(user_id=user.pk).first()
    cache[STAFF_CACHE] = staff
    return staff


def needs_second_factor(user: object) -> bool:
    """Django staff and a member's admin must prove a TOTP code before they act."""
    if getattr(user, "is_staff", False):
        return True
    staff = getattr(user, "staff", None)
    return isinstance(staff, Staff) and staff.role == Staff.Role.ADMIN


def member_of(user: AbstractBaseUser | AnonymousUser) -> Member | None:
    staff = staff_of(user)
    return staff.member if staff else None


def is_consortium_member(user: AbstractBaseUser | AnonymousUser) -> bool:
    member = member_of(user)
    return member is not None and member.is_active


def member_list(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Member]:
    """Active members see every member and applicant; anyone else sees only their own."""
    if is_consortium_member(viewer):
        return Member.objects.order_by("name", "pk")
    own = member_of(viewer)
    return Member.objects.filter(pk=own.pk) if own else Member.objects.none()


def proposal_list(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Proposal]:
    return _proposals(viewer, Prefetch("votes", queryset=_votes()))


def proposal_rows(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Any] | PreparedRows:
    """``proposal_list`` for a list route, as plain rows (``values()``): the columns a list
    entry shows of each proposal and of its subject and sponsor (``MemberRef``: three of a
    member's thirteen columns), newest first; ``proposal_votes`` reads a page's votes.

    Model instances and a prefetch cost more CPU than the database took to answer (a page
    of 20 proposals built 60 instances and compiled two queries: docs/load.md); a member's
    query is the same for every member, so it is compiled once per process."""
    if is_consortium_member(viewer):
        return _proposal_rows()
    own = member_of(viewer)
    rows = Proposal.objects.order_by("-chain_proposal_id").values(*PROPOSAL_ROW_FIELDS)
    return rows.filter(subject=own) if own else rows.none()


def proposal_votes(proposal_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Proposal pk -> its votes as plain rows, in the order a proposal lists them (by block,
    then as recorded), in one query for the whole page (none for an empty page)."""
    votes: dict[int, list[dict[str, Any]]] = {}
    for vote in _page_votes().of(proposal_ids):
        votes.setdefault(vote.pop("proposal_id"), []).append(vote)
    return votes


#: what a list shows of a proposal (consortium.apis.ProposalOutputSerializer) ...
PROPOSAL_FIELDS = (
    "chain_proposal_id",
    "kind",
    "status",
    "new_governance_address",
    "eligible",
    "yes",
    "no",
    "deadline",
    "opened_block",
    "decided_block",
)
#: ... and of a member it names (MemberRefSerializer)
MEMBER_REF_FIELDS = ("id", "name", "governance_address")
#: a row of ``proposal_rows``: the proposal's pk, its shown columns, its subject's and sponsor's
PROPOSAL_ROW_FIELDS = (
    "id",
    *PROPOSAL_FIELDS,
    *(f"subject__{name}" for name in MEMBER_REF_FIELDS),
    *(f"sponsor__{name}" for name in MEMBER_REF_FIELDS),
)
#: a row of ``proposal_votes``: what a list shows of a vote (VoteSerializer), its voter's
VOTE_ROW_FIELDS = (
    "support",
    "tx_hash",
    "block_number",
    *(f"voter__{name}" for name in MEMBER_REF_FIELDS),
)


@functools.cache
def _proposal_rows() -> PreparedRows:
    return PreparedRows(
        Proposal.objects.order_by("-chain_proposal_id").values(*PROPOSAL_ROW_FIELDS)
    )


@functools.cache
def _page_votes() -> PreparedMatches:
    votes = _votes().values("proposal_id", *VOTE_ROW_FIELDS)
    return PreparedMatches(votes, "proposal_id")


def _votes() -> QuerySet[Vote]:
    return Vote.objects.select_related("voter").order_by("block_number", "pk")


def _proposals(viewer: Viewer, votes: Prefetch) -> QuerySet[Proposal]:  # type: ignore[type-arg]
    base = Proposal.objects.select_related("subject", "sponsor").prefetch_related(votes)
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


class Action(Enum):
    """What a member's admin does for it; ``value`` is the verb, ``rule`` who may, in a line."""

    SPONSOR = ("sponsor an application", "only the admin of an active member hospital can sponsor")
    PROPOSE_REMOVAL = (
        "propose removing a member",
        "only the admin of an active member hospital can propose a removal",
    )
    PROPOSE_ROTATION = (
        "propose a new governance address",
        "only the admin of an active member hospital, or of the member itself, can propose a "
        "new governance address",
    )
    VOTE = ("vote", "only the admin of an active hospital member can vote")
    FINALIZE = ("finalize a proposal", "only the admin of an active hospital member can finalize")
    INVITE_STAFF = ("invite staff", "only the member's admin can invite staff")
    REMOVE_STAFF = ("remove staff", "only the member's admin can remove its staff")
    SEE_INVITATIONS = ("see invitations", "only the member's admin can see its invitations")

    @property
    def is_staff_management(self) -> bool:
        return self in (Action.INVITE_STAFF, Action.REMOVE_STAFF, Action.SEE_INVITATIONS)

    def __init__(self, verb: str, rule: str) -> None:
        self.verb = verb
        self.rule = rule


@dataclass(frozen=True)
class Standing:
    """Whether a viewer may take an action: the staff row that acts, or why not."""

    staff: Staff | None
    refusal: str = ""

    @property
    def allowed(self) -> bool:
        return not self.refusal


def may_act(*, viewer: Viewer, action: Action, member: Member | None = None) -> Standing:
    """May ``viewer`` take ``action`` (for ``member``, where the action names one)?

    The one answer the pages and the API both act on. Governance actions are the admin's
    of an active hospital member (the member's governance key signs them); a member's own
    admin may also propose a new governance address for it while it is active; staff is
    managed by the member's admin. Whether the action fits the state of what it acts on
    (an applicant still applying, a deadline passed) is the service's to check.
    """
    staff = staff_of(viewer)
    if staff is None:
        who = (
            "the member's admin"
            if action.is_staff_management
            else "the admin of an active hospital member"
        )
        return Standing(None, f"only {who} may {action.verb}")
    if staff.role != Staff.Role.ADMIN:
        if action.is_staff_management:
            return Standing(staff, f"only the member's admin may {action.verb}")
        return Standing(
            staff,
            f"only the admin of {staff.member.name} may {action.verb}; "
            f"you are its {staff.get_role_display().lower()}",
        )
    own = member is not None and staff.member_id == member.pk and member.is_active
    if action.is_staff_management or (action is Action.PROPOSE_ROTATION and own):
        return Standing(staff)
    if not staff.member.can_vote:
        return Standing(
            staff,
            f"only active hospital members may {action.verb}; {staff.member.name} is "
            f"{staff.member.get_status_display().lower()}",
        )
    return Standing(staff)


def acting_staff(*, viewer: Viewer, action: Action, member: Member | None = None) -> Staff:
    """The staff row that takes ``action``; Forbidden, saying why (and the page's rule), if
    ``may_act`` says no."""
    standing = may_act(viewer=viewer, action=action, member=member)
    if standing.staff is None or not standing.allowed:
        raise Forbidden(standing.refusal, rule=action.rule)
    return standing.staff


SIGNED_BY: dict[str, Action] = {
    "SponsorAdmission": Action.SPONSOR,
    "ProposeRemoval": Action.PROPOSE_REMOVAL,
    "ProposeRotation": Action.PROPOSE_ROTATION,
    "Vote": Action.VOTE,
}
"""The signed actions a member's admin takes for it, and the rule (``may_act``) of each."""


def _signer_check(action: Action) -> Callable[[Viewer, object], Member]:
    def check(viewer: Viewer, subject: object) -> Member:
        member = subject if isinstance(subject, Member) else None
        return acting_staff(viewer=viewer, action=action, member=member).member

    return check


def _anyone(viewer: Viewer, subject: object) -> None:
    """Anyone may apply: the application's own signature proves the applicant's key."""
    return None


def signer_checks() -> dict[str, Callable[[Viewer, object], Member | None]]:
    """Who acts for the viewer in each of this app's signed actions (``relay.register_checks``)."""
    checks: dict[str, Callable[[Viewer, object], Member | None]] = {
        name: _signer_check(action) for name, action in SIGNED_BY.items()
    }
    checks["Application"] = _anyone
    return checks
