"""Writes for hospital nodes: registration on chain, the node's API token, check-in.

A node is registered by its member's signature (the member's wallet, or the
embedded demo's keystore) and relayed by the portal; the Node row is the
mirror written by the event handler. A node proves it is alive by signing a
one-time challenge with the signing key registered for it on chain.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from eth_utils import to_checksum_address

from chain.errors import ContractError
from portal.consortium.models import Member
from portal.consortium.services import member_signature
from portal.core import chain as portal_chain
from portal.core import relay
from portal.core.exceptions import ServiceError
from portal.core.models import ApiToken
from portal.core.signing import (
    parse_address,
    parse_bytes32,
    parse_signature,
    recover_signer,
)
from portal.core.sync import mirror_receipt
from portal.core.tokens import api_token_issue, api_token_revoke_all
from portal.nodes.models import CheckInChallenge, Node

_ZERO = "0x" + "0" * 40


def node_registration_typed_data(
    *, member: Member, node_id: str, signer_address: str, data_public_key: str
) -> dict[str, Any]:
    """The EIP-712 RegisterNode message the member's governance key signs."""
    message = {
        "nodeId": parse_bytes32(node_id, "node id"),
        "signer": parse_address(signer_address, "node's signing address"),
        "dataKey": parse_bytes32(data_public_key, "node's data public key"),
    }
    return relay.typed_data("RegisterNode", message, signer=member.governance_address)


def node_register(
    *,
    member: Member,
    node_id: str,
    signer_address: str,
    data_public_key: str,
    label: str = "",
    signature: str | None = None,
) -> Node:
    """Register a training node of `member` on chain, then mirror it."""
    if not member.is_active or member.chain_member_id is None:
        raise ServiceError(f"{member.name} is not a consortium member and cannot register nodes")
    node_id = parse_bytes32(node_id, "node id")
    if Node.objects.filter(node_id=node_id).exists():
        raise ServiceError(f"node {node_id} is already registered")
    signer = parse_address(signer_address, "node's signing address")
    data_key = parse_bytes32(data_public_key, "node's data public key")
    typed = node_registration_typed_data(
        member=member, node_id=node_id, signer_address=signer, data_public_key=data_key
    )
    sig = member_signature(member, typed, signature)
    receipt = relay.send(typed, sig, signer=member.governance_address)
    mirror_receipt(receipt)
    node = Node.objects.filter(node_id=node_id).first()
    if node is None:
        raise ServiceError("the node was registered on chain but is not mirrored yet; retry")
    if label and node.label != label:
        node.label = label[:100]
        node.save(update_fields=["label"])
    return node


@transaction.atomic
def node_token_issue(*, node: Node) -> str:
    """Give the node a service user and a fresh API token; any previous token stops working.

    It expires after NODE_TOKEN_DAYS: the operator issues the next one the same way.

    The key is returned once, for the operator to put in the node's token file.
    """
    if not node.active:
        raise ServiceError(f"node {node} is revoked on chain; register a new node instead")
    user_model = get_user_model()
    if node.user is None:
        user = user_model.objects.create_user(username=f"node-{node.node_id[2:18]}")
        user.set_unusable_password()
        user.save()
        node.user = user
        node.save(update_fields=["user"])
    api_token_revoke_all(user_id=node.user.pk)
    _, key = api_token_issue(user=node.user, kind=ApiToken.Kind.NODE)
    return key


@transaction.atomic
def check_in_challenge_issue(*, node: Node) -> CheckInChallenge:
    if not node.active:
        raise ServiceError(f"node {node} is revoked on chain and cannot check in")
    # Only the newest challenge is worth answering; older unused ones are dropped.
    node.challenges.filter(used_at__isnull=True).delete()
    return CheckInChallenge.objects.create(node=node)


def check_in_typed_data(*, node: Node, challenge: str) -> dict[str, Any]:
    message = {"nodeId": node.node_id, "challenge": parse_bytes32(challenge, "challenge")}
    return relay.typed_data("NodeCheckIn", message)


@transaction.atomic
def check_in_verify(*, node: Node, challenge: str, signature: str) -> Node:
    """Accept a check-in signed by the node's signing key as registered on chain now."""
    value = parse_bytes32(challenge, "challenge")
    found = CheckInChallenge.objects.select_for_update().filter(node=node, value=value).first()
    if found is None or found.used_at is not None:
        raise ServiceError("unknown or already used challenge: ask for a new one")
    if found.expires_at <= timezone.now():
        raise ServiceError("the challenge has expired: ask for a new one")
    sig = parse_signature(signature)
    found.used_at = timezone.now()
    found.save(update_fields=["used_at"])
    recovered = recover_signer(check_in_typed_data(node=node, challenge=value), sig)
    try:
        on_chain = portal_chain.registry().node(node.node_id)
    except ContractError as exc:
        raise ServiceError(f"the chain does not know node {node.node_id}: {exc}") from exc
    if not on_chain.active or to_checksum_address(on_chain.signer) == _ZERO:
        raise ServiceError(f"node {node.node_id} is not active on chain")
    if recovered != to_checksum_address(on_chain.signer):
        raise ServiceError(
            f"the check-in is signed by {recovered}, not by the node's registered signer "
            f"{to_checksum_address(on_chain.signer)}"
        )
    node.last_check_in = found.used_at
    node.save(update_fields=["last_check_in"])
    return node
