"""What every dataset write relays: the registry, who may sign for a member, the check of
a signature, and mirroring the receipt's events at once."""

from __future__ import annotations

from typing import Any

from chain.dataset_registry import DatasetRegistry
from portal.consortium.models import Delegate, Member
from portal.core import chain as portal_chain
from portal.core import relay
from portal.core.exceptions import ServiceError
from portal.core.signing import parse_address, parse_bytes32
from portal.core.sync import mirror_receipt
from portal.datasets.models import Grant
from portal.nodes.models import Node


def dataset_registry() -> DatasetRegistry:
    """The DatasetRegistry at its recorded deployment on the portal's chain."""
    return portal_chain.datasets()


def active_node_or_error(node_id: str) -> Node:
    node_id = parse_bytes32(node_id, "node id")
    node = Node.objects.select_related("member").filter(node_id=node_id, active=True).first()
    if node is None:
        raise ServiceError(f"no active training node {node_id} is registered on chain")
    return node


def signer_for(member: Member, signer: str | None) -> str:
    address = parse_address(signer, "signer address") if signer else member.governance_address
    if address == member.governance_address:
        return address
    if Delegate.objects.filter(
        member=member, address=address, scope=Delegate.Scope.DATA, enabled=True
    ).exists():
        return address
    raise ServiceError(
        f"{address} is neither {member.name}'s governance address nor one of its Data "
        "delegates: sign with one of those keys"
    )


def grant_signer(*, member: Member, signer: str, node: Node) -> str:
    """Who signs a grant of ``member``'s data to ``node``, given the manifest's ``signer``.

    The chain lets a Data delegate grant the member's own nodes; releasing data to
    another member's node ("server mode") is the governance key's decision.
    """
    return signer if node.member_id == member.pk else member.governance_address


def signed_by(
    typed: dict[str, Any],
    signature: str | None,
    signer: str,
    member: Member,
    what: str = "the manifest",
) -> bytes:
    """``signer``'s signature over ``typed`` for ``member`` (see ``relay.signed``)."""
    return relay.signed(typed, signature, signer=signer, member=member, what=what)


def hex_signature(sig: bytes) -> str:
    return "0x" + sig.hex()


def record_grant(registry: DatasetRegistry, grant: Grant) -> None:
    receipt = registry.send_signed(
        "RecordGrant",
        {
            "datasetId": grant.version.dataset.chain_id,
            "nodeId": grant.node.node_id,
            "grantHash": grant.grant_hash,
        },
        grant.signature,
        signer=grant.signer_address,
    )
    mirror_receipt(receipt)
