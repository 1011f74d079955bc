"""An open upload until it ends: its ciphertext chunks checked against the signed manifest
as they arrive, then anchored on chain (committed), or deleted (aborted, expired, refused)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from chain.dataset_registry import DatasetRegistry
from chain.errors import ContractError
from portal.core.exceptions import ServiceError
from portal.core.sync import mirror_receipt
from portal.datasets.models import DatasetVersion, Grant, Upload, chunk_storage_path
from portal.datasets.services.chain import dataset_registry, record_grant

#: Stored chunks are hashed in blocks of this size, so a large chunk is never read whole.
HASH_BLOCK_BYTES = 1024 * 1024


def _open_upload(upload_id: uuid.UUID) -> Upload:
    upload = (
        Upload.objects.select_for_update()
        .select_related("version", "dataset")
        .filter(pk=upload_id)
        .first()
    )
    if upload is None:
        raise ServiceError(f"upload {upload_id} is gone", code="not_found")
    if upload.state != Upload.State.OPEN or upload.version is None:
        raise ServiceError(
            f"upload {upload.id} is {upload.get_state_display().lower()}"
            + (f": {upload.error}" if upload.error else "")
            + "; start a new upload",
            code="upload_closed",
        )
    if upload.expires_at <= timezone.now():
        raise ServiceError(f"upload {upload.id} expired; start a new upload", code="expired")
    return upload


def _manifest_chunk(version: DatasetVersion, index: int) -> tuple[str, int]:
    if not 0 <= index < version.chunk_count:
        raise ServiceError(
            f"chunk {index} is not in the manifest: it lists chunks 0 to {version.chunk_count - 1}"
        )
    entry = version.manifest["chunks"][index]
    return str(entry["sha256"]), int(entry["size"])


@transaction.atomic
def upload_chunk_store(*, upload: Upload, index: int, data: bytes) -> Upload:
    """Store ciphertext chunk ``index`` if it matches the signed manifest; idempotent."""
    upload = _open_upload(upload.pk)
    version = upload.version
    assert version is not None
    expected_sha, expected_size = _manifest_chunk(version, index)
    if len(data) != expected_size:
        raise ServiceError(
            f"chunk {index} is {len(data)} bytes; the manifest says {expected_size}: "
            "nothing was stored for it",
            code="chunk_mismatch",
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha:
        raise ServiceError(
            f"chunk {index} has SHA-256 {actual}; the signed manifest says {expected_sha}: "
            "nothing was stored for it",
            code="chunk_mismatch",
        )
    path = version.chunk_path(index)
    if default_storage.exists(path):
        default_storage.delete(path)
    saved = default_storage.save(path, ContentFile(data))
    if saved != path:  # a concurrent request wrote it first; keep one copy
        default_storage.delete(saved)
    if index not in upload.received:
        upload.received = sorted([*upload.received, index])
        upload.save(update_fields=["received", "updated_at"])
    return upload


def _stored_sha256(path: str) -> str | None:
    if not default_storage.exists(path):
        return None
    digest = hashlib.sha256()
    with default_storage.open(path, "rb") as f:
        while block := f.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _delete_chunks(dataset_id: uuid.UUID, number: int, count: int) -> None:
    for index in range(count):
        path = chunk_storage_path(dataset_id, number, index)
        if default_storage.exists(path):
            default_storage.delete(path)


def upload_discard(*, upload: Upload, state: str, reason: str) -> Upload:
    """Delete what an unfinished upload stored: chunks, its version and grants, a new dataset."""
    version = upload.version
    if version is not None:
        _delete_chunks(version.dataset_id, version.number, version.chunk_count)
    with transaction.atomic():
        dataset = upload.dataset
        if version is not None and version.state == DatasetVersion.State.UPLOADING:
            version.delete()
        upload.version = None
        upload.state = state
        upload.error = reason
        upload.save(update_fields=["version", "state", "error", "updated_at"])
        if dataset is not None and not dataset.versions.exists():
            upload.dataset = None
            upload.save(update_fields=["dataset"])
            dataset.delete()
    return upload


def upload_abort(*, upload: Upload) -> Upload:
    if upload.state != Upload.State.OPEN:
        raise ServiceError(f"upload {upload.id} is already {upload.get_state_display().lower()}")
    return upload_discard(
        upload=upload, state=Upload.State.FAILED, reason="aborted by the uploader"
    )


def upload_commit(*, upload: Upload) -> Upload:
    """Anchor the manifest and record its grants once every chunk is stored and matches."""
    with transaction.atomic():
        upload = _open_upload(upload.pk)
        missing = upload.missing
        if missing:
            shown = ", ".join(str(i) for i in missing[:20]) + (" …" if len(missing) > 20 else "")
            raise ServiceError(
                f"{len(missing)} chunk(s) are missing ({shown}): upload them, then commit",
                code="chunks_missing",
            )
    version = upload.version
    assert version is not None
    for index in range(version.chunk_count):
        expected, _ = _manifest_chunk(version, index)
        if _stored_sha256(version.chunk_path(index)) != expected:
            message = f"stored chunk {index} no longer matches the manifest; upload it again"
            with transaction.atomic():
                Upload.objects.filter(pk=upload.pk).update(
                    received=[i for i in upload.received if i != index]
                )
            raise ServiceError(message, code="chunk_mismatch")
    registry = dataset_registry()
    try:
        receipt = registry.send_signed(
            "AnchorManifest",
            {
                "datasetId": version.dataset.chain_id,
                "version": version.number,
                "manifestHash": version.manifest_sha256,
                "previous": version.previous,
            },
            version.signature,
            signer=version.signer_address,
        )
    except ContractError as exc:
        upload_discard(
            upload=upload, state=Upload.State.FAILED, reason=f"the chain refused the anchor: {exc}"
        )
        raise
    mirror_receipt(receipt)
    problems = [
        problem
        for grant in version.grants.filter(state=Grant.State.PENDING)
        .select_related("node", "version__dataset")
        .order_by("pk")
        if (problem := _grant_relayed(registry, grant)) is not None
    ]
    upload.refresh_from_db()
    upload.state = Upload.State.COMMITTED
    upload.error = "; ".join(problems)
    upload.save(update_fields=["state", "error", "updated_at"])
    return upload


def _grant_relayed(registry: DatasetRegistry, grant: Grant) -> str | None:
    """Relay one of a committed version's grants; what went wrong, if anything.

    Each grant was signed at its signer's nonce for its (dataset, node) pair, so one the
    chain refuses holds up none of the others. A nonce the pair has moved past since (a
    grant or revocation of that node on this dataset landed meanwhile) is not sent, and the
    owner is told to grant again, which signs at the chain's nonce.
    """
    node, signer = grant.node.node_id, grant.signer_address
    message = {"datasetId": grant.version.dataset.chain_id, "nodeId": node}
    expected = registry.nonce_for("RecordGrant", signer, message)
    if expected != grant.signature_nonce:
        grant.delete()
        return (
            f"grant to node {node} was not sent: it was signed with nonce "
            f"{grant.signature_nonce} of {signer} for this node, but the chain expects "
            f"{expected} (another grant or revocation of the node landed since); grant it "
            f"again with POST /api/v1/datasets/{grant.version.dataset_id}/grants/add/"
        )
    try:
        record_grant(registry, grant)
    except ContractError as exc:
        grant.delete()
        return f"grant to node {node} was refused: {exc}"
    return None


def uploads_cleanup(*, now: Any = None) -> int:
    """Discard every open upload past its expiry; returns how many."""
    now = now or timezone.now()
    count = 0
    for upload in Upload.objects.filter(state=Upload.State.OPEN, expires_at__lte=now):
        upload_discard(
            upload=upload, state=Upload.State.EXPIRED, reason="abandoned: expired before commit"
        )
        count += 1
    return count
