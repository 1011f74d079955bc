"""Hospital nodes for governors: which machines each member runs and whether they check in."""

from __future__ import annotations

from django.contrib import admin

from portal.core.admin import ReadOnlyAdminMixin
from portal.nodes.models import Node


@admin.register(Node)
class NodeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Registered on chain by the member; the admin only shows them."""

    list_display = [
        "label",
        "member",
        "node_id",
        "signer_address",
        "active",
        "online",
        "last_check_in",
        "registered_block",
    ]
    list_filter = ["active", "member"]
    search_fields = ["label", "node_id", "signer_address", "member__name"]
    list_select_related = ["member"]
    exclude = ["user"]

    @admin.display(boolean=True, description="online")
    def online(self, node: Node) -> bool:
        return node.is_online
