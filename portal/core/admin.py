"""Chain-sync status for governors: where the mirror stands and whether it is healthy."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from portal.core.models import ChainEventRecord, ChainSyncState, ContractDeployment

admin.site.site_header = "MedChain governance"
admin.site.site_title = "MedChain governance"
admin.site.index_title = "What the chain decided, mirrored; view only"


class ReadOnlyAdminMixin:
    """Written by the chain sync and deployment only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChainSyncState)
class ChainSyncStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "last_block",
        "head_block",
        "lag_blocks",
        "events_processed",
        "reorgs",
        "last_success_at",
        "last_error_short",
    ]
    readonly_fields = [
        "name",
        "last_block",
        "last_block_hash",
        "head_block",
        "lag_blocks",
        "events_processed",
        "reorgs",
        "last_run_at",
        "last_success_at",
        "last_error",
    ]

    @admin.display(description="lag (blocks)")
    def lag_blocks(self, state: ChainSyncState) -> int | None:
        return state.lag

    @admin.display(description="last error")
    def last_error_short(self, state: ChainSyncState) -> str:
        return state.last_error[:120] or "—"


@admin.register(ContractDeployment)
class ContractDeploymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "chain_id", "address", "block_number", "deployed_at"]
    list_filter = ["chain_id"]


@admin.register(ChainEventRecord)
class ChainEventRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "block_number", "log_index", "tx_hash", "processed_at"]
    list_filter = ["name"]
    search_fields = ["tx_hash", "block_hash"]
    date_hierarchy = "processed_at"
