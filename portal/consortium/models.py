"""Members, their staff and keys, and the admission proposals they vote on.

Rows with a chain counterpart (members once admitted, proposals, votes,
delegates) are a mirror written by the event handlers; the chain is the truth.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class Role(models.IntegerChoices):
    """Matches the contract's `Role` enum."""

    HOSPITAL = 1, "Hospital"
    DIAGNOSTIC_SERVER = 2, "Diagnostic server"


class Member(models.Model):
    """A hospital or diagnostic server, from its application onwards."""

    class Status(models.TextChoices):
        APPLIED = "applied", "Applied, awaiting a sponsor"
        PROPOSED = "proposed", "Proposed, members voting"
        ACTIVE = "active", "Member"
        REFUSED = "refused", "Refused"
        REMOVED = "removed", "Removed"

    name = models.CharField(max_length=200)
    contact_email = models.EmailField()
    role = models.PositiveSmallIntegerField(choices=Role.choices, default=Role.HOSPITAL)
    governance_address = models.CharField(max_length=42, unique=True)
    data_public_key = models.CharField(max_length=66, help_text="X25519 public key, 0x + 64 hex")
    name_hash = models.CharField(max_length=66)
    application_signature = models.CharField(max_length=140, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.APPLIED)
    chain_member_id = models.PositiveBigIntegerField(null=True, blank=True, unique=True)
    founding = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def can_vote(self) -> bool:
        return self.is_active and self.role == Role.HOSPITAL


class Staff(models.Model):
    """A person acting for a member, with one role inside it."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        STEWARD = "steward", "Data steward"
        CLINICIAN = "clinician", "Clinician"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="staff")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "staff"

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}, {self.member})"


def _invitation_token() -> str:
    return secrets.token_urlsafe(32)


def _invitation_expiry() -> datetime:
    return timezone.now() + timedelta(days=7)


class Invitation(models.Model):
    """An admin's invitation for a person to join the member's staff."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Staff.Role.choices)
    token = models.CharField(max_length=64, unique=True, default=_invitation_token)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    expires_at = models.DateTimeField(default=_invitation_expiry)
    accepted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.email} → {self.member} as {self.role}"

    @property
    def is_open(self) -> bool:
        return self.accepted_at is None and self.expires_at > timezone.now()


class Proposal(models.Model):
    """Mirror of a ConsortiumRegistry proposal."""

    class Kind(models.IntegerChoices):
        ADMISSION = 0, "Admission"
        REMOVAL = 1, "Removal"
        ROTATION = 2, "Key rotation"

    class Status(models.IntegerChoices):
        OPEN = 1, "Open"
        ACCEPTED = 2, "Accepted"
        REJECTED = 3, "Rejected"

    chain_proposal_id = models.PositiveBigIntegerField(unique=True)
    kind = models.PositiveSmallIntegerField(choices=Kind.choices)
    status = models.PositiveSmallIntegerField(choices=Status.choices, default=Status.OPEN)
    subject = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="proposals")
    sponsor = models.ForeignKey(
        Member, on_delete=models.SET_NULL, null=True, related_name="sponsored"
    )
    new_governance_address = models.CharField(max_length=42, blank=True)
    eligible = models.PositiveIntegerField()
    yes = models.PositiveIntegerField(default=0)
    no = models.PositiveIntegerField(default=0)
    deadline = models.DateTimeField()
    opened_block = models.PositiveBigIntegerField(default=0)
    decided_block = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-chain_proposal_id"]

    def __str__(self) -> str:
        return f"#{self.chain_proposal_id} {self.get_kind_display()} of {self.subject}"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN and self.deadline > timezone.now()


class Vote(models.Model):
    """Mirror of a VoteCast event."""

    proposal = models.ForeignKey(Proposal, on_delete=models.CASCADE, related_name="votes")
    voter = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="votes")
    support = models.BooleanField()
    tx_hash = models.CharField(max_length=66)
    block_number = models.PositiveBigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["proposal", "voter"], name="one_vote_per_member")
        ]

    def __str__(self) -> str:
        return f"{self.voter} {'yes' if self.support else 'no'} on {self.proposal}"


class Delegate(models.Model):
    """Mirror of a role-scoped delegate address registered by a member."""

    class Scope(models.IntegerChoices):
        DATA = 1, "Data (anchors datasets)"
        NODE = 2, "Node (acts for a training node)"

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="delegates")
    address = models.CharField(max_length=42, unique=True)
    scope = models.PositiveSmallIntegerField(choices=Scope.choices)
    enabled = models.BooleanField(default=True)
    updated_block = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.address} ({self.get_scope_display()}) for {self.member}"
