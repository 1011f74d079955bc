"""DatasetRegistry events → the dataset mirror. Each handler re-reads what the
chain now says about the dataset or grant the event names, so re-delivery is
harmless. An anchor made outside this portal has no manifest here and is skipped."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from chain.datasets import DatasetRegistry, dataset_id_parts
from chain.events import ChainEvent
from portal.core.sync import handles
from portal.datasets.models import Dataset, DatasetVersion, Grant

Handler = Callable[[ChainEvent], None]
HANDLERS: dict[str, Handler] = {}


def _mirrors(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return handles(name)(fn)

    return register


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


def _registry() -> DatasetRegistry:
    from portal.datasets.services import dataset_registry

    return dataset_registry()


@_mirrors("DatasetAnchored")
def on_dataset_anchored(event: ChainEvent) -> None:
    manifest = _hex(event.args["manifestHash"])
    owned = _dataset(event.args["datasetId"])
    if owned is None:
        return
    row = owned.versions.filter(manifest_sha256=manifest).first()
    if row is None:
        return
    if _registry().version_of(owned.chain_id, manifest) != row.number:
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


@_mirrors("GrantRecorded")
def on_grant_recorded(event: ChainEvent) -> None:
    dataset = _dataset(event.args["datasetId"])
    if dataset is None:
        return
    node_id = _hex(event.args["nodeId"])
    on_chain = _registry().grant_of(dataset.chain_id, node_id)
    current = _hex(on_chain.grant_hash)
    grants = Grant.objects.filter(version__dataset=dataset, node__node_id=node_id)
    grants.exclude(grant_hash=current).filter(state=Grant.State.ACTIVE).update(
        state=Grant.State.REPLACED
    )
    if not on_chain.active:
        return
    row = grants.filter(grant_hash=current).first()
    if row is None:
        return
    became_active = row.state == Grant.State.PENDING
    if row.state in (Grant.State.PENDING, Grant.State.ACTIVE):
        row.state = Grant.State.ACTIVE
    if _hex(event.args["grantHash"]) == current:
        row.recorded_tx = event.tx_hash
        row.recorded_block = event.block_number
        row.cross_member = bool(event.args["crossMember"])
    row.save()
    if became_active:
        _ask_node_to_fetch(row)


def _ask_node_to_fetch(grant: Grant) -> None:
    """Once a grant is on chain, the node's own worker fetches, verifies and decrypts."""
    from portal.datasets.tasks import fetch_and_verify

    args = [str(grant.version.dataset_id), grant.version.number]
    queue = grant.node.queue
    transaction.on_commit(lambda: fetch_and_verify.apply_async(args=args, queue=queue))


@_mirrors("GrantRevoked")
def on_grant_revoked(event: ChainEvent) -> None:
    dataset = _dataset(event.args["datasetId"])
    if dataset is None:
        return
    node_id = _hex(event.args["nodeId"])
    if _registry().grant_of(dataset.chain_id, node_id).active:
        return  # granted again since
    Grant.objects.filter(
        version__dataset=dataset, node__node_id=node_id, state=Grant.State.ACTIVE
    ).update(state=Grant.State.REVOKED, revoked_tx=event.tx_hash)


@_mirrors("DatasetWithdrawn")
def on_dataset_withdrawn(event: ChainEvent) -> None:
    dataset = _dataset(event.args["datasetId"])
    if dataset is None or not _registry().dataset(dataset.chain_id).withdrawn:
        return
    dataset.status = Dataset.Status.WITHDRAWN
    dataset.withdrawn_tx = event.tx_hash
    dataset.save(update_fields=["status", "withdrawn_tx", "updated_at"])
    dataset.versions.filter(state=DatasetVersion.State.ANCHORED).update(
        state=DatasetVersion.State.WITHDRAWN
    )
