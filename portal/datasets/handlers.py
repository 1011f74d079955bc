"""DatasetRegistry events → the dataset mirror, from the events' fields alone.

Each handler sets what its event says (never reads a view), so applying the registry's
events in chain order, again and again, ends where the chain is (portal/core/sync.py).
An anchor or grant made outside this portal has no manifest or grant row here and is
skipped.
"""

from __future__ import annotations

from django.db import transaction

from chain.dataset_registry import dataset_id_parts
from chain.events import ChainEvent
from portal.core.chain import DATASETS
from portal.core.sync import Handler, each
from portal.datasets.models import Dataset, DatasetVersion, Grant


def _hex(value: bytes | str) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else str(value).lower()


def _dataset(chain_id: bytes | str) -> Dataset | None:
    """The dataset an on-chain id names: its uuid, owned by the member in its high half (the
    same uuid under another member's id is that member's dataset, not this one)."""
    member_id, dataset_uuid = dataset_id_parts(chain_id)
    return (
        Dataset.objects.select_related("owner")
        .filter(pk=dataset_uuid, owner__chain_member_id=member_id)
        .first()
    )


def on_dataset_anchored(event: ChainEvent) -> None:
    manifest = _hex(event.args["manifestHash"])
    owned = _dataset(event.args["datasetId"])
    if owned is None:
        return
    row = owned.versions.filter(manifest_sha256=manifest).first()
    if row is None:
        return
    if int(event.args["version"]) != row.number:
        return
    dataset = owned
    withdrawn = dataset.status == Dataset.Status.WITHDRAWN
    row.state = DatasetVersion.State.WITHDRAWN if withdrawn else DatasetVersion.State.ANCHORED
    row.anchored_tx = event.tx_hash
    row.anchored_block = event.block_number
    row.save(update_fields=["state", "anchored_tx", "anchored_block"])
    latest = dataset.versions.exclude(state=DatasetVersion.State.UPLOADING).order_by("-number")
    if latest.first() == row:
        summary = row.manifest
        dataset.modality = summary.get("modality", "")
        dataset.instances = summary.get("instances", 0)
        dataset.annotated_instances = summary.get("annotated_instances", 0)
        dataset.boxes = summary.get("boxes", 0)
    if not withdrawn:
        dataset.status = Dataset.Status.ACTIVE
    dataset.save()


def on_grant_recorded(event: ChainEvent) -> None:
    """The event's grant is now the node's one grant to the dataset: any other active
    one was replaced by it (a replaced one comes back when it is recorded again)."""
    dataset = _dataset(event.args["datasetId"])
    if dataset is None:
        return
    current = _hex(event.args["grantHash"])
    node_id = _hex(event.args["nodeId"])
    grants = Grant.objects.filter(version__dataset=dataset, node__node_id=node_id)
    grants.exclude(grant_hash=current).filter(state=Grant.State.ACTIVE).update(
        state=Grant.State.REPLACED
    )
    row = grants.filter(grant_hash=current).first()
    if row is None or row.state == Grant.State.REVOKED:
        return
    became_active = row.state == Grant.State.PENDING
    row.state = Grant.State.ACTIVE
    row.recorded_tx = event.tx_hash
    row.recorded_block = event.block_number
    row.cross_member = bool(event.args["crossMember"])
    row.save()
    if became_active:
        _ask_node_to_fetch(row)


def _ask_node_to_fetch(grant: Grant) -> None:
    """Once a grant is on chain, the node's own worker fetches, verifies and decrypts."""
    from portal.nodes.agent.tasks import fetch_and_verify

    args = [str(grant.version.dataset_id), grant.version.number]
    queue = grant.node.queue
    transaction.on_commit(lambda: fetch_and_verify.apply_async(args=args, queue=queue))


def on_grant_revoked(event: ChainEvent) -> None:
    dataset = _dataset(event.args["datasetId"])
    if dataset is None:
        return
    Grant.objects.filter(
        version__dataset=dataset,
        node__node_id=_hex(event.args["nodeId"]),
        state=Grant.State.ACTIVE,
    ).update(state=Grant.State.REVOKED, revoked_tx=event.tx_hash)


def on_dataset_withdrawn(event: ChainEvent) -> None:
    dataset = _dataset(event.args["datasetId"])
    if dataset is None:
        return
    dataset.status = Dataset.Status.WITHDRAWN
    dataset.withdrawn_tx = event.tx_hash
    dataset.save(update_fields=["status", "withdrawn_tx", "updated_at"])
    dataset.versions.filter(state=DatasetVersion.State.ANCHORED).update(
        state=DatasetVersion.State.WITHDRAWN
    )


MIRRORS: dict[tuple[str, str], Handler] = {
    (DATASETS, "DatasetAnchored"): each(on_dataset_anchored),
    (DATASETS, "GrantRecorded"): each(on_grant_recorded),
    (DATASETS, "GrantRevoked"): each(on_grant_revoked),
    (DATASETS, "DatasetWithdrawn"): each(on_dataset_withdrawn),
}
