"""Writes for membership: applications, sponsoring, removal and rotation, votes, staff.

Every chain action is signed by the member (its wallet, or in the embedded
demo its keystore under var/) and relayed by the portal, which then mirrors
the resulting events at once so the page a person sees is already current.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.db import transaction
from django.utils import timezone
from eth_utils import keccak
from web3.types import TxReceipt

from portal.consortium import selectors
from portal.consortium.models import Delegate, Invitation, Member, Proposal, Role, Staff
from portal.core import chain as portal_chain
from portal.core import demokeys, relay
from portal.core.exceptions import Forbidden, ServiceError
from portal.core.signing import (
    parse_address,
    parse_bytes32,
    parse_signature,
    recover_signer,
    relay_budget_spend,
)
from portal.core.sync import mirror_receipt


def name_hash(name: str) -> str:
    return "0x" + keccak(text=name.strip()).hex()


def demo_keystore_save(*, address: str, private_key: str) -> None:
    if not settings.DEMO_KEYSTORES:
        raise ServiceError("demo keystores are disabled on this portal")
    demokeys.save(address, private_key)


def member_signature(member: Member, typed: dict[str, Any], signature: str | None) -> bytes:
    """The member's signature over `typed` by its governance key (see ``relay.signed``)."""
    return relay.signed(typed, signature, signer=member.governance_address, member=member)


def _after_chain_write(receipt: TxReceipt) -> None:
    # Mirror the receipt's events at once so the next page shows the outcome; the beat
    # task's sync applies them again, in chain order.
    mirror_receipt(receipt)


def founding_member_record(
    *, name: str, contact_email: str, governance_address: str, data_public_key: str, role: int
) -> Member:
    """Record a founding member (set at deployment) before the first sync mirrors it."""
    address = parse_address(governance_address)
    member, _ = Member.objects.update_or_create(
        governance_address=address,
        defaults={
            "name": name,
            "contact_email": contact_email,
            "data_public_key": parse_bytes32(data_public_key, "data public key"),
            "name_hash": name_hash(name),
            "role": role,
            "founding": True,
        },
    )
    return member


def application_typed_data(
    *, governance_address: str, role: int, data_public_key: str, name: str
) -> dict[str, Any]:
    """What an applicant signs to prove it controls its address and keys."""
    address = parse_address(governance_address)
    message = {
        "applicant": address,
        "role": int(role),
        "dataKey": parse_bytes32(data_public_key, "data public key"),
        "nameHash": name_hash(name),
    }
    return relay.typed_data("Application", message, signer=address)


@transaction.atomic
def application_submit(
    *,
    name: str,
    contact_email: str,
    governance_address: str,
    data_public_key: str,
    role: int = Role.HOSPITAL,
    signature: str,
    admin_username: str | None = None,
    admin_password: str | None = None,
) -> Member:
    """Store a signed application; nothing goes on chain until a member sponsors it."""
    name = name.strip()
    if not name:
        raise ServiceError("the hospital's name is required")
    if role not in Role.values:
        raise ServiceError("role must be 1 (hospital) or 2 (diagnostic server)")
    address = parse_address(governance_address)
    existing = Member.objects.filter(governance_address=address).first()
    if existing is not None and existing.status != Member.Status.REFUSED:
        raise ServiceError(f"{address} has already applied ({existing.get_status_display()})")
    typed = application_typed_data(
        governance_address=address, role=role, data_public_key=data_public_key, name=name
    )
    sig = parse_signature(signature)
    signer = recover_signer(typed, sig)
    if signer != address:
        raise ServiceError(
            f"the application is signed by {signer}, not by the applicant address {address}"
        )
    # A refused applicant may apply again; its row (and past proposals) stay.
    member = existing or Member(governance_address=address)
    member.name = name
    member.contact_email = contact_email
    member.role = role
    member.data_public_key = parse_bytes32(data_public_key, "data public key")
    member.name_hash = name_hash(name)
    member.application_signature = "0x" + sig.hex()
    member.status = Member.Status.APPLIED
    member.save()
    if admin_username and not member.staff.exists():
        staff_create(
            member=member,
            username=admin_username,
            password=admin_password,
            email=contact_email,
            role=Staff.Role.ADMIN,
        )
    return member


def _check_sponsor(*, sponsor: Member, applicant: Member) -> None:
    if not sponsor.can_vote:
        raise ServiceError("only an active hospital member can sponsor an application")
    if applicant.status != Member.Status.APPLIED:
        raise ServiceError(
            f"{applicant.name} cannot be sponsored now ({applicant.get_status_display()})"
        )


def sponsor_typed_data(*, sponsor: Member, applicant: Member) -> dict[str, Any]:
    """What the sponsor signs to open ``applicant``'s admission; refused unless it still applies."""
    _check_sponsor(sponsor=sponsor, applicant=applicant)
    message = {
        "applicant": applicant.governance_address,
        "role": applicant.role,
        "dataKey": applicant.data_public_key,
        "nameHash": applicant.name_hash,
    }
    return relay.typed_data("SponsorAdmission", message, signer=sponsor.governance_address)


def admission_sponsor(
    *, sponsor: Member, applicant: Member, signature: str | None = None
) -> Proposal:
    """Open the admission proposal on chain, signed by a hospital member."""
    typed = sponsor_typed_data(sponsor=sponsor, applicant=applicant)
    sig = member_signature(sponsor, typed, signature)
    applied = {"applicantSignature": applicant.application_signature}
    receipt = relay.send(typed, sig, signer=sponsor.governance_address, unsigned=applied)
    _after_chain_write(receipt)
    return _opened_proposal(receipt)


def _opened_proposal(receipt: TxReceipt) -> Proposal:
    """The mirrored proposal that the transaction in `receipt` opened."""
    events = portal_chain.registry().decode_events(receipt)
    opened = [e for e in events if e.name == "ProposalOpened"]
    if not opened:
        tx = receipt["transactionHash"]
        raise ServiceError(
            f"transaction {tx.hex() if isinstance(tx, bytes) else tx} opened no proposal: the "
            "deployed registry does not match this portal; ask its operators to check the "
            "deployment record",
            code="no_proposal_opened",
        )
    number = opened[0].args["proposalId"]
    proposal = Proposal.objects.filter(chain_proposal_id=number).first()
    if proposal is None:
        raise ServiceError(
            f"proposal #{number} is open on chain but not mirrored yet: reload the page in a "
            "moment",
            code="out_of_sync",
        )
    return proposal


def _check_changeable(member: Member) -> None:
    if not member.is_active or member.chain_member_id is None:
        raise ServiceError(
            f"{member.name} is not an active member ({member.get_status_display().lower()})"
        )
    pending = selectors.pending_change(member=member)
    if pending is None:
        return
    number = pending.chain_proposal_id
    if pending.is_open:
        raise ServiceError(
            f"{member.name} already has a {pending.get_kind_display().lower()} proposal open "
            f"(#{number}): it must be decided before another change is proposed"
        )
    raise ServiceError(
        f"{member.name}'s {pending.get_kind_display().lower()} proposal #{number} is past its "
        "deadline but not closed: finalize it first"
    )


def _check_removal(*, proposer: Member, member: Member) -> None:
    if not proposer.can_vote:
        raise ServiceError("only an active hospital member can propose removing a member")
    _check_changeable(member)


def removal_typed_data(*, proposer: Member, member: Member) -> dict[str, Any]:
    """What the proposer signs to open a removal proposal for `member`."""
    _check_removal(proposer=proposer, member=member)
    assert member.chain_member_id is not None  # _check_changeable
    return relay.typed_data(
        "ProposeRemoval",
        {"memberId": member.chain_member_id},
        signer=proposer.governance_address,
    )


def removal_propose(*, proposer: Member, member: Member, signature: str | None = None) -> Proposal:
    """Open a proposal to remove `member`, signed by an active hospital member."""
    typed = removal_typed_data(proposer=proposer, member=member)
    sig = member_signature(proposer, typed, signature)
    receipt = relay.send(typed, sig, signer=proposer.governance_address)
    _after_chain_write(receipt)
    return _opened_proposal(receipt)


def _check_new_governance(value: str) -> str:
    address = parse_address(value, "new governance address")
    holder = Member.objects.filter(governance_address=address).first()
    if holder is not None:
        raise ServiceError(
            f"{address} is already the governance address of {holder.name} "
            f"({holder.get_status_display().lower()}): choose an address no member has used"
        )
    if Delegate.objects.filter(address=address).exists():
        raise ServiceError(f"{address} is already a member's delegate address: choose another")
    pending = Proposal.objects.filter(
        new_governance_address=address, status=Proposal.Status.OPEN
    ).first()
    if pending is not None:
        raise ServiceError(
            f"{address} is already proposed for {pending.subject.name} in proposal "
            f"#{pending.chain_proposal_id}: choose another"
        )
    return address


def _check_rotation(*, proposer: Member, member: Member, new_governance: str) -> str:
    own = proposer.pk == member.pk and proposer.is_active
    if not own and not proposer.can_vote:
        raise ServiceError(
            f"only {member.name} itself or an active hospital member can propose a new "
            "governance address for it"
        )
    _check_changeable(member)
    return _check_new_governance(new_governance)


def rotation_typed_data(*, proposer: Member, member: Member, new_governance: str) -> dict[str, Any]:
    """What the proposer signs to open a proposal moving `member` to `new_governance`."""
    address = _check_rotation(proposer=proposer, member=member, new_governance=new_governance)
    assert member.chain_member_id is not None  # _check_changeable
    return relay.typed_data(
        "ProposeRotation",
        {"memberId": member.chain_member_id, "newGovernance": address},
        signer=proposer.governance_address,
    )


def rotation_propose(
    *, proposer: Member, member: Member, new_governance: str, signature: str | None = None
) -> Proposal:
    """Open a proposal to move `member`'s governance to a new address; members vote on it."""
    typed = rotation_typed_data(proposer=proposer, member=member, new_governance=new_governance)
    sig = member_signature(proposer, typed, signature)
    receipt = relay.send(typed, sig, signer=proposer.governance_address)
    _after_chain_write(receipt)
    return _opened_proposal(receipt)


def vote_typed_data(*, voter: Member, proposal: Proposal, support: bool) -> dict[str, Any]:
    message = {
        "proposalId": proposal.chain_proposal_id,
        "support": support,
        "voter": voter.governance_address,
    }
    return relay.typed_data("Vote", message, signer=voter.governance_address)


def vote_cast(
    *, voter: Member, proposal: Proposal, support: bool, signature: str | None = None
) -> Proposal:
    """Relay the member's signed vote; the contract decides as soon as it can."""
    if not voter.can_vote:
        raise ServiceError("only active hospital members vote")
    if not proposal.is_open:
        raise ServiceError(f"proposal #{proposal.chain_proposal_id} is no longer open")
    if proposal.votes.filter(voter=voter).exists():
        raise ServiceError(f"{voter.name} has already voted on #{proposal.chain_proposal_id}")
    typed = vote_typed_data(voter=voter, proposal=proposal, support=support)
    sig = member_signature(voter, typed, signature)
    receipt = relay.send(typed, sig, signer=voter.governance_address)
    _after_chain_write(receipt)
    proposal.refresh_from_db()
    return proposal


def proposal_finalize(*, proposal: Proposal, by: Member) -> Proposal:
    """Close a proposal whose deadline passed without a decision (on chain anyone may; the
    portal relays it, at its own cost, only for an active hospital member)."""
    number = proposal.chain_proposal_id
    if not by.can_vote:
        raise Forbidden("only an active hospital member can have a proposal finalized")
    if proposal.status != Proposal.Status.OPEN:
        raise ServiceError(f"proposal #{number} is already decided")
    if proposal.is_open:
        raise ServiceError(
            f"proposal #{number} is open for votes until {proposal.deadline.isoformat()}; "
            "finalize it after that"
        )
    relay_budget_spend(member_id=by.pk, member_name=by.name)
    _after_chain_write(portal_chain.registry().finalize(number))
    proposal.refresh_from_db()
    return proposal


@transaction.atomic
def staff_create(
    *, member: Member, username: str, password: str | None, email: str, role: str
) -> Staff:
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise ServiceError(f"the username {username!r} is taken")
    user = user_model.objects.create_user(username=username, email=email, password=password)
    return Staff.objects.create(user=user, member=member, role=role)


GOVERNORS_GROUP = "Consortium governors"
# The apps whose rows the governance admin shows; a governor may view them, never change them.
GOVERNED_APPS = ("consortium", "core", "nodes", "datasets")


@transaction.atomic
def governor_create(*, username: str, password: str | None, email: str) -> AbstractBaseUser:
    """A consortium governor: Django staff (so a TOTP second factor is required) who may view
    every governance row in the admin and change none; not a superuser."""
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise ServiceError(f"the username {username!r} is taken")
    user = user_model.objects.create_user(
        username=username, email=email, password=password, is_staff=True
    )
    user.groups.add(governors_group_sync())
    return user


def governors_group_sync() -> Group:
    """The governors' group with the view permission of every governed model, made if missing
    and brought up to date (a model added later gains its view permission here)."""
    group, _ = Group.objects.get_or_create(name=GOVERNORS_GROUP)
    group.permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=GOVERNED_APPS, codename__startswith="view_"
        )
    )
    return group


@transaction.atomic
def staff_invite(*, admin: Staff, email: str, role: str) -> Invitation:
    if admin.role != Staff.Role.ADMIN:
        raise Forbidden("only the member's admin can invite staff")
    # An applicant is not a member yet: the consortium has not vouched for whom it lets in.
    if not admin.member.is_active:
        raise Forbidden(
            f"{admin.member.name} is not an active consortium member "
            f"({admin.member.get_status_display().lower()}): staff can be invited once it is"
        )
    if role not in Staff.Role.values:
        raise ServiceError(f"role must be one of {', '.join(Staff.Role.values)}")
    return Invitation.objects.create(
        member=admin.member, email=email, role=role, invited_by=admin.user
    )


@transaction.atomic
def invitation_accept(*, token: str, username: str, password: str) -> Staff:
    invitation = Invitation.objects.select_for_update().filter(token=token).first()
    if invitation is None or not invitation.is_open:
        raise ServiceError("this invitation is unknown, used or expired: ask for a new one")
    staff = staff_create(
        member=invitation.member,
        username=username,
        password=password,
        email=invitation.email,
        role=invitation.role,
    )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    return staff


@transaction.atomic
def staff_remove(*, admin: Staff, staff: Staff) -> None:
    if admin.role != Staff.Role.ADMIN or admin.member_id != staff.member_id:
        raise ServiceError("only the member's own admin can remove its staff")
    if staff.pk == admin.pk:
        raise ServiceError("an admin cannot remove themself; ask another admin")
    user: AbstractBaseUser = staff.user
    staff.delete()
    user.is_active = False
    user.save(update_fields=["is_active"])
