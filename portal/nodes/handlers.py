"""Chain events → the Node mirror. Each handler re-reads the node from the
chain, so delivering an event twice (or after a rewind) changes nothing."""

from __future__ import annotations

from eth_utils import to_checksum_address

from chain.registry import ChainEvent
from portal.consortium.handlers import member_mirror
from portal.consortium.models import Member
from portal.core import chain as portal_chain
from portal.core.sync import handles
from portal.core.tokens import api_token_revoke_all
from portal.nodes.models import Node


def _hex32(value: bytes | str) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else value.lower()


def node_mirror(node_id: str, *, block: int = 0) -> Node | None:
    """Make the Node row for `node_id` say what the chain says now."""
    view = portal_chain.registry().node(node_id)
    if view.member_id == 0:
        return None
    member = Member.objects.filter(chain_member_id=view.member_id).first()
    if member is None:
        member = member_mirror(view.member_id)
    assert member is not None
    node, created = Node.objects.update_or_create(
        node_id=node_id,
        defaults={
            "member": member,
            "signer_address": to_checksum_address(view.signer),
            "data_public_key": _hex32(view.data_key),
            "active": bool(view.active),
        },
    )
    if block and not node.registered_block:
        node.registered_block = block
        node.save(update_fields=["registered_block"])
    if not node.active and node.user_id is not None:
        # A revoked node's token stops working at once.
        api_token_revoke_all(user_id=node.user_id)
    return node


@handles("NodeRegistered", "NodeRevoked", "NodeKeyRotated")
def on_node_changed(event: ChainEvent) -> None:
    block = event.block_number if event.name == "NodeRegistered" else 0
    node_mirror(_hex32(event.args["nodeId"]), block=block)
