"""ConsortiumRegistry node events → the Node mirror, from the events' fields alone.

Each handler sets what its event says, so delivering an event twice, or again after
a rewind, changes nothing the chain does not say (portal/core/sync.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import to_checksum_address

from chain.events import ChainEvent
from portal.consortium.handlers import hex32, member_of
from portal.consortium.models import Member
from portal.core.chain import REGISTRY
from portal.core.sync import Handler, each
from portal.core.tokens import api_token_revoke_all
from portal.nodes.models import Node


def on_nodes_registered(events: Sequence[ChainEvent]) -> None:
    """A run of registrations in one query: a sync from an empty cursor is mostly these."""
    ids = {int(e.args["memberId"]) for e in events}
    members = {m.chain_member_id: m for m in Member.objects.filter(chain_member_id__in=ids)}
    rows: dict[str, Node] = {}
    for event in events:
        a = event.args
        member = members.get(int(a["memberId"]))
        if member is None:
            member_of(int(a["memberId"]), event)  # says why it is skipped
            continue
        node_id = hex32(a["nodeId"])
        rows[node_id] = Node(
            node_id=node_id,
            member=member,
            signer_address=to_checksum_address(a["signer"]),
            data_public_key=hex32(a["dataKey"]),
            active=True,
            registered_block=event.block_number,
        )
    Node.objects.bulk_create(
        list(rows.values()),
        update_conflicts=True,
        unique_fields=["node_id"],
        update_fields=["member", "signer_address", "data_public_key", "active", "registered_block"],
    )


def on_node_revoked(event: ChainEvent) -> None:
    node = Node.objects.filter(node_id=hex32(event.args["nodeId"])).first()
    if node is None:
        return
    if node.active:
        node.active = False
        node.save(update_fields=["active"])
    if node.user_id is not None:
        # A revoked node's token stops working at once.
        api_token_revoke_all(user_id=node.user_id)


def on_node_key_rotated(event: ChainEvent) -> None:
    Node.objects.filter(node_id=hex32(event.args["nodeId"])).update(
        data_public_key=hex32(event.args["dataKey"])
    )


MIRRORS: dict[tuple[str, str], Handler] = {
    (REGISTRY, "NodeRegistered"): on_nodes_registered,
    (REGISTRY, "NodeRevoked"): each(on_node_revoked),
    (REGISTRY, "NodeKeyRotated"): each(on_node_key_rotated),
}
