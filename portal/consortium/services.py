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
from rest_framework import status
from web3.types import TxReceipt

from chain import eip712
from chain.keystore import read_keystore, write_keystore
from portal.consortium import selectors
from portal.consortium.models import Delegate, Invitation, Member, Proposal, Role, Staff
from portal.core import chain as portal_chain
from portal.core.apis import ServiceError
from portal.core.signing import (
    chain_domain,
    parse_address,
    parse_bytes32,
    parse_signature,
    recover_signer,
    relay_budget_spend,
)
from portal.core.sync import chain_sync_run

DEMO_KEYSTORE_PASSWORD = "medchain-demo"


def name_hash(name: str) -> str:
    return "0x" + keccak(text=name.strip()).hex()


def demo_key(member: Member) -> str | None:
    """The member's governance key from the embedded demo keystore, where allowed."""
    if not settings.DEMO_KEYSTORES:
        return None
    path = settings.DEMO_KEYSTORE_DIR / f"{member.governance_address.lower()}.json"
    if not path.exists():
        return None
    return read_keystore(path, DEMO_KEYSTORE_PASSWORD)


def demo_keystore_save(*, address: str, private_key: str) -> None:
    if not settings.DEMO_KEYSTORES:
        raise ServiceError("demo keystores are disabled on this portal")
    settings.DEMO_KEYSTORE_DIR.mkdir(parents=True, exist_ok=True)
    path = settings.DEMO_KEYSTORE_DIR / f"{address.lower()}.json"
    # Demo keys guard nothing of value (production refuses them); a light KDF keeps clicks fast.
    write_keystore(path, private_key, DEMO_KEYSTORE_PASSWORD, kdf="pbkdf2", iterations=1024)


def member_signature(member: Member, typed: dict[str, Any], signature: str | None) -> bytes:
    """The member's signature over `typed`: the one given, or in the embedded demo
    one made with its demo keystore; refused unless it is by the governance key."""
    if signature:
        sig = parse_signature(signature)
    else:
        key = demo_key(member)
        if key is None:
            raise ServiceError(
                "a signature from the member's wallet is required (sign the typed data first)"
            )
        sig = eip712.sign_typed(key, typed)
    signer = recover_signer(typed, sig)
    if signer != member.governance_address:
        raise ServiceError(
            f"the signature is by {signer}, not by {member.name}'s governance address "
            f"{member.governance_address}"
        )
    relay_budget_spend(member_id=member.pk, member_name=member.name)
    return sig


def _after_chain_write() -> None:
    # Mirror at once so the next page shows the outcome; the beat task also runs it.
    chain_sync_run()


def member_found(
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
    registry = portal_chain.registry()
    return eip712.application(
        **chain_domain(),
        applicant=address,
        role=int(role),
        data_key=parse_bytes32(data_public_key, "data public key"),
        name_hash=name_hash(name),
        nonce=registry.nonce(address),
    )


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


def sponsor_typed_data(*, sponsor: Member, applicant: Member) -> dict[str, Any]:
    registry = portal_chain.registry()
    return eip712.sponsor_admission(
        **chain_domain(),
        applicant=applicant.governance_address,
        role=applicant.role,
        data_key=applicant.data_public_key,
        name_hash=applicant.name_hash,
        nonce=registry.nonce(sponsor.governance_address),
    )


def admission_sponsor(
    *, sponsor: Member, applicant: Member, signature: str | None = None
) -> Proposal:
    """Open the admission proposal on chain, signed by a hospital member."""
    if not sponsor.can_vote:
        raise ServiceError("only an active hospital member can sponsor an application")
    if applicant.status != Member.Status.APPLIED:
        raise ServiceError(
            f"{applicant.name} cannot be sponsored now ({applicant.get_status_display()})"
        )
    typed = sponsor_typed_data(sponsor=sponsor, applicant=applicant)
    sig = member_signature(sponsor, typed, signature)
    registry = portal_chain.registry()
    receipt = registry.sponsor_admission_by_sig(
        applicant=applicant.governance_address,
        role=applicant.role,
        data_key=applicant.data_public_key,
        name_hash=applicant.name_hash,
        applicant_signature=bytes.fromhex(applicant.application_signature[2:]),
        sponsor=sponsor.governance_address,
        sponsor_signature=sig,
    )
    _after_chain_write()
    return _opened_proposal(receipt)


def _opened_proposal(receipt: TxReceipt) -> Proposal:
    """The mirrored proposal that the transaction in `receipt` opened."""
    events = portal_chain.registry().decode_events(receipt)
    opened = [e for e in events if e.name == "ProposalOpened"]
    return Proposal.objects.get(chain_proposal_id=opened[0].args["proposalId"])


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
    return eip712.propose_removal(
        **chain_domain(),
        member_id=member.chain_member_id,
        nonce=portal_chain.registry().nonce(proposer.governance_address),
    )


def removal_propose(*, proposer: Member, member: Member, signature: str | None = None) -> Proposal:
    """Open a proposal to remove `member`, signed by an active hospital member."""
    typed = removal_typed_data(proposer=proposer, member=member)
    sig = member_signature(proposer, typed, signature)
    # Relay exactly what was signed.
    receipt = portal_chain.registry().propose_removal_by_sig(
        member_id=typed["message"]["memberId"],
        proposer=proposer.governance_address,
        signature=sig,
    )
    _after_chain_write()
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
    return eip712.propose_rotation(
        **chain_domain(),
        member_id=member.chain_member_id,
        new_governance=address,
        nonce=portal_chain.registry().nonce(proposer.governance_address),
    )


def rotation_propose(
    *, proposer: Member, member: Member, new_governance: str, signature: str | None = None
) -> Proposal:
    """Open a proposal to move `member`'s governance to a new address; members vote on it."""
    typed = rotation_typed_data(proposer=proposer, member=member, new_governance=new_governance)
    sig = member_signature(proposer, typed, signature)
    # Relay exactly what was signed.
    receipt = portal_chain.registry().propose_rotation_by_sig(
        member_id=typed["message"]["memberId"],
        new_governance=typed["message"]["newGovernance"],
        proposer=proposer.governance_address,
        signature=sig,
    )
    _after_chain_write()
    return _opened_proposal(receipt)


def vote_typed_data(*, voter: Member, proposal: Proposal, support: bool) -> dict[str, Any]:
    registry = portal_chain.registry()
    return eip712.vote(
        **chain_domain(),
        proposal_id=proposal.chain_proposal_id,
        support=support,
        voter=voter.governance_address,
        nonce=registry.nonce(voter.governance_address),
    )


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
    portal_chain.registry().vote_by_sig(
        proposal_id=proposal.chain_proposal_id,
        support=support,
        voter=voter.governance_address,
        signature=sig,
    )
    _after_chain_write()
    proposal.refresh_from_db()
    return proposal


def proposal_finalize(*, proposal: Proposal, by: Member) -> Proposal:
    """Close a proposal whose deadline passed without a decision (on chain anyone may; the
    portal relays it for the admin of an active member, checked by the caller)."""
    number = proposal.chain_proposal_id
    if proposal.status != Proposal.Status.OPEN:
        raise ServiceError(f"proposal #{number} is already decided")
    if proposal.is_open:
        raise ServiceError(
            f"proposal #{number} is open for votes until {proposal.deadline.isoformat()}; "
            "finalize it after that"
        )
    relay_budget_spend(member_id=by.pk, member_name=by.name)
    portal_chain.registry().finalize(number)
    _after_chain_write()
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


class NotAllowed(ServiceError):
    """The asker's standing does not allow this action; answered 403."""

    status_code = status.HTTP_403_FORBIDDEN  # type: ignore[assignment]


@transaction.atomic
def staff_invite(*, admin: Staff, email: str, role: str) -> Invitation:
    if admin.role != Staff.Role.ADMIN:
        raise NotAllowed("only the member's admin can invite staff")
    # An applicant is not a member yet: the consortium has not vouched for whom it lets in.
    if not admin.member.is_active:
        raise NotAllowed(
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
