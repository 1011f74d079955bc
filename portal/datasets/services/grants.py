"""The owner's actions on an anchored dataset: grant a node a version's key, revoke a
grant, withdraw the dataset; each signed by the owner (or, for an own node's grant, a
Data delegate) and recorded on chain."""

from __future__ import annotations

from typing import Any

from chain.dataset_registry import DatasetRegistry
from chain.errors import ContractError
from portal.core import relay
from portal.core.exceptions import ServiceError
from portal.core.sync import mirror_receipt
from portal.datasets.manifest import ManifestInvalid, grant_hash, parse_wrapped_key
from portal.datasets.models import Dataset, DatasetVersion, Grant
from portal.datasets.services.chain import (
    dataset_registry,
    grant_signer,
    hex_signature,
    record_grant,
    signed_by,
    signer_for,
)
from portal.nodes.models import Node


def grant_add_signer(*, dataset: Dataset, node: Node, signer: str | None) -> str:
    """The governance address (``signer`` left out) or a Data delegate granting an own node."""
    owner = dataset.owner
    address = signer_for(owner, signer)
    if grant_signer(member=owner, signer=address, node=node) != address:
        raise ServiceError(
            f"node {node} belongs to {node.member.name}: a grant to another member's node takes "
            f"{owner.name}'s governance key ({owner.governance_address}), not a Data delegate's"
        )
    return address


def grant_typed_data(
    *,
    dataset: Dataset,
    node: Node,
    wrapped_key: bytes,
    version: DatasetVersion | None = None,
    signer: str | None = None,
) -> tuple[DatasetVersion, str, dict[str, Any]]:
    """The RecordGrant typed data for the governance key, or ``signer`` (a Data delegate)."""
    address = grant_add_signer(dataset=dataset, node=node, signer=signer)
    version = version or _anchored_latest(dataset)
    hashed = grant_hash(
        manifest_sha256=version.manifest_sha256, node_id=node.node_id, wrapped_key=wrapped_key
    )
    message = {"datasetId": dataset.chain_id, "nodeId": node.node_id, "grantHash": hashed}
    return version, hashed, relay.typed_data("RecordGrant", message, signer=address)


def _anchored_latest(dataset: Dataset) -> DatasetVersion:
    if dataset.status == Dataset.Status.WITHDRAWN:
        raise ServiceError(f"{dataset.title} was withdrawn; it takes no new grants")
    latest = dataset.latest_version
    if latest is None:
        raise ServiceError(f"{dataset.title} has no anchored version yet")
    return latest


def grant_add(
    *,
    dataset: Dataset,
    node: Node,
    wrapped_key: str,
    signature: str | None,
    version: DatasetVersion | None = None,
    signer: str | None = None,
) -> Grant:
    """Grant a node the data key of a version (the latest by default), signed by the owner's
    governance key or, for an own node, by ``signer``, one of its Data delegates."""
    try:
        raw = parse_wrapped_key(wrapped_key)
    except ManifestInvalid as exc:
        raise ServiceError(str(exc)) from None
    address = grant_add_signer(dataset=dataset, node=node, signer=signer)
    version, hashed, typed = grant_typed_data(
        dataset=dataset, node=node, wrapped_key=raw, version=version, signer=address
    )
    sig = signed_by(typed, signature, address, dataset.owner, f"the grant to node {node}")
    grant = Grant.objects.create(
        version=version,
        node=node,
        wrapped_key="0x" + raw.hex(),
        grant_hash=hashed,
        signature=hex_signature(sig),
        signer_address=address,
        signature_nonce=int(typed["message"]["nonce"]),
        cross_member=node.member_id != dataset.owner_id,
    )
    try:
        record_grant(dataset_registry(), grant)
    except ContractError:
        grant.delete()
        raise
    grant.refresh_from_db()
    return grant


def _node_name(node: Node) -> str:
    return node.label or node.node_id[:10]


def _revocable(registry: DatasetRegistry, grant: Grant) -> None:
    """Refuse, saying why, unless ``grant`` is the node's grant in force, here and on chain.

    The chain keeps one grant per dataset and node: recording a newer version's grant
    replaces the older one, so only the newest grant to a node is ever in force.
    """
    dataset = grant.version.dataset
    where = f"v{grant.version.number} of {dataset.title}"
    node = f"node {_node_name(grant.node)}"
    if grant.state == Grant.State.REVOKED:
        tx = f" (transaction {grant.revoked_tx})" if grant.revoked_tx else ""
        raise ServiceError(f"{node} holds no active grant on {where}: it was already revoked{tx}")
    if grant.state == Grant.State.REPLACED:
        raise ServiceError(
            f"{node} holds no active grant on {where}: its grant on a newer version replaced "
            "it, so nothing is released under it; revoke the active grant instead"
        )
    if grant.state != Grant.State.ACTIVE:
        raise ServiceError(f"the grant of {where} to {node} is not recorded on chain yet")
    on_chain = registry.grant_of(dataset.chain_id, grant.node.node_id)
    if not on_chain.active or "0x" + on_chain.grant_hash.hex() != grant.grant_hash:
        raise ServiceError(
            f"the chain does not hold the grant of {where} to {node} in force: the portal has "
            "not caught up with the chain yet; reload the page in a moment",
            code="out_of_sync",
        )


def grant_revoke_typed_data(*, grant: Grant) -> dict[str, Any]:
    """The RevokeGrant typed data for one grant in force (it names the dataset and node)."""
    registry = dataset_registry()
    _revocable(registry, grant)
    dataset = grant.version.dataset
    message = {"datasetId": dataset.chain_id, "nodeId": grant.node.node_id}
    return relay.typed_data("RevokeGrant", message, signer=dataset.owner.governance_address)


def grant_revoke(*, grant: Grant, signature: str | None) -> Grant:
    """Revoke one version's grant to one node, on chain: the portal releases nothing more
    to that node (a key it already unwrapped cannot be recalled)."""
    typed = grant_revoke_typed_data(grant=grant)
    dataset = grant.version.dataset
    owner = dataset.owner
    sig = relay.signed(typed, signature, signer=owner.governance_address, member=owner)
    receipt = relay.send(typed, sig, signer=owner.governance_address)
    mirror_receipt(receipt)
    grant.refresh_from_db()
    return grant


def withdraw_typed_data(*, dataset: Dataset) -> dict[str, Any]:
    """What the owner's governance key signs to withdraw ``dataset``; refused once withdrawn."""
    if dataset.status == Dataset.Status.WITHDRAWN:
        raise ServiceError(f"{dataset.title} is already withdrawn")
    return relay.typed_data(
        "WithdrawDataset",
        {"datasetId": dataset.chain_id},
        signer=dataset.owner.governance_address,
    )


def dataset_withdraw(*, dataset: Dataset, signature: str | None) -> Dataset:
    """Withdraw for good, on chain: no release of its ciphertext from then on."""
    typed = withdraw_typed_data(dataset=dataset)
    owner = dataset.owner
    sig = relay.signed(typed, signature, signer=owner.governance_address, member=owner)
    receipt = relay.send(typed, sig, signer=owner.governance_address)
    mirror_receipt(receipt)
    dataset.refresh_from_db()
    return dataset
