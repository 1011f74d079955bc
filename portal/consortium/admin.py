"""Governance admin: a governor can look at everything the chain decides, never change it."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from portal.consortium.models import Delegate, Invitation, Member, Proposal, Staff, Vote
from portal.core.admin import ReadOnlyAdminMixin


class StaffInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Staff
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    extra = 0


@admin.register(Member)
class MemberAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "role",
        "status",
        "chain_member_id",
        "governance_address",
        "founding",
        "created_at",
    ]
    list_filter = ["role", "status", "founding"]
    search_fields = ["name", "governance_address", "contact_email"]
    inlines = [StaffInline]


class VoteInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Vote
    fields = ("voter", "support", "block_number", "tx_hash")
    readonly_fields = fields
    extra = 0


@admin.register(Proposal)
class ProposalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "chain_proposal_id",
        "kind",
        "subject",
        "sponsor",
        "status",
        "tally",
        "deadline",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["subject__name", "subject__governance_address"]
    list_select_related = ["subject", "sponsor"]
    inlines = [VoteInline]

    @admin.display(description="tally (yes / no of eligible)")
    def tally(self, proposal: Proposal) -> str:
        return f"{proposal.yes} / {proposal.no} of {proposal.eligible}"


@admin.register(Delegate)
class DelegateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["address", "member", "scope", "enabled", "updated_block"]
    list_filter = ["scope", "enabled"]
    search_fields = ["address", "member__name"]


@admin.register(Staff)
class StaffAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Staff are invited and removed by their own hospital's admin in the portal; a governor
    who could edit them here could make anyone an admin of any hospital."""

    list_display = ["user", "member", "role", "created_at"]
    list_filter = ["role", "member"]
    search_fields = ["user__username", "user__email", "member__name"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations are made by a member's admin in the portal; a governor may revoke one."""

    list_display = ["email", "member", "role", "invited_by", "expires_at", "accepted_at"]
    list_filter = ["role", "member"]
    search_fields = ["email", "member__name"]
    readonly_fields = ["member", "email", "role", "invited_by", "accepted_at", "created_at"]
    exclude = ["token"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
