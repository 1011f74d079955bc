"""Writes for datasets: resumable uploads, anchoring, grants, withdrawal, the access log.

A version becomes visible only once every chunk matches its signed manifest
and the manifest hash is anchored on chain; a failed or abandoned upload
leaves no row that anyone sees and no stored chunk. Chain actions are signed
by the member (manifest and grants to its own nodes: governance key or a Data
delegate; grants to another member's node, revocation and withdrawal: governance
key) and relayed by the portal, which then mirrors the receipt's events at once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from rest_framework import status
from web3.types import TxReceipt

from chain import eip712
from chain.datasets import DatasetRegistry
from chain.errors import ContractError
from portal.consortium.models import Delegate, Member
from portal.consortium.services import member_signature
from portal.core import chain as portal_chain
from portal.core.apis import ServiceError
from portal.core.signing import (
    parse_address,
    parse_bytes32,
    parse_signature,
    recover_signer,
    relay_budget_spend,
)
from portal.datasets.manifest import (
    ManifestInvalid,
    check_manifest,
    grant_hash,
    manifest_hash,
    parse_wrapped_key,
)
from portal.datasets.models import (
    ZERO_HASH,
    AccessLog,
    Dataset,
    DatasetVersion,
    Grant,
    Upload,
    chain_dataset_id,
    chunk_storage_path,
)
from portal.nodes.models import Node

RECORD_READ = 1024 * 1024


class Refused(ServiceError):
    """Access the asker may not have; answered 403 and recorded in the access log."""

    status_code = status.HTTP_403_FORBIDDEN  # type: ignore[assignment]


class QuotaExceeded(ServiceError):
    """More ciphertext in flight than the member's upload quota allows; answered 413."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE  # type: ignore[assignment]


class TooManyReports(ServiceError):
    """A node reports faster than ``DATASET_NODE_REPORTS_PER_HOUR`` allows; answered 429."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS  # type: ignore[assignment]


def max_chunk_bytes() -> int:
    return int(settings.DATASET_MAX_CHUNK_BYTES)


def max_dataset_bytes() -> int:
    return int(settings.DATASET_MAX_BYTES)


def dataset_registry() -> DatasetRegistry:
    """The DatasetRegistry at its recorded deployment on the portal's chain."""
    return portal_chain.datasets()


def _domain(registry: DatasetRegistry) -> dict[str, Any]:
    return {"chain_id": registry.client.chain_id, "contract": registry.address}


# Typed data: what the member signs


@dataclass(frozen=True)
class GrantRequest:
    node: Node
    wrapped_key: bytes
    signature: str | None = None


@dataclass(frozen=True)
class UploadPlan:
    """The next version of a dataset and the typed data its signers sign, nonces in order."""

    dataset_id: uuid.UUID
    version: int
    previous: str
    manifest_sha256: str
    signer: str
    manifest_typed: dict[str, Any]
    grant_hashes: tuple[str, ...]
    grants_typed: tuple[dict[str, Any], ...]
    grant_signers: tuple[str, ...]


def node_get(node_id: str) -> Node:
    node_id = parse_bytes32(node_id, "node id")
    node = Node.objects.select_related("member").filter(node_id=node_id, active=True).first()
    if node is None:
        raise ServiceError(f"no active training node {node_id} is registered on chain")
    return node


def _signer_for(member: Member, signer: str | None) -> str:
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


def upload_plan(
    *,
    member: Member,
    dataset_id: uuid.UUID,
    manifest_sha256: str,
    signer: str | None,
    grants: Sequence[tuple[Node, str]],
) -> UploadPlan:
    """Version, previous hash and typed data for a new version, as the chain expects them now.

    The manifest is relayed first, then each grant in order, so each signer's
    nonces follow one another in that order (see ``grant_signer`` for who signs).
    """
    if not member.is_active or member.chain_member_id is None:
        raise ServiceError(f"{member.name} is not an active consortium member")
    manifest_sha256 = parse_bytes32(manifest_sha256, "manifest hash")
    signer_address = _signer_for(member, signer)
    dataset = Dataset.objects.filter(pk=dataset_id).first()
    if dataset is not None and dataset.owner_id != member.pk:
        raise ServiceError(f"dataset {dataset_id} belongs to another member; pick a new id")
    if dataset is not None and dataset.status == Dataset.Status.WITHDRAWN:
        raise ServiceError(f"dataset {dataset_id} was withdrawn; it takes no new versions")
    latest = dataset.latest_version if dataset else None
    version = latest.number + 1 if latest else 1
    previous = latest.manifest_sha256 if latest else ZERO_HASH
    registry = dataset_registry()
    chain_id = chain_dataset_id(member.chain_member_id, dataset_id)
    on_chain = registry.dataset(chain_id)
    if on_chain.latest_version != version - 1:
        raise ServiceError(
            f"the chain holds version {on_chain.latest_version} of this dataset but the portal "
            f"knows {version - 1}; wait for the portal to sync, or use a new dataset id",
            code="out_of_sync",
        )
    domain = _domain(registry)
    nonces = {signer_address: registry.nonce(signer_address)}
    manifest_typed = eip712.anchor_manifest(
        **domain,
        dataset_id=chain_id,
        version=version,
        manifest_hash=manifest_sha256,
        previous=previous,
        nonce=nonces[signer_address],
    )
    nonces[signer_address] += 1
    hashes: list[str] = []
    typed: list[dict[str, Any]] = []
    signers: list[str] = []
    for node, hashed in grants:
        who = grant_signer(member=member, signer=signer_address, node=node)
        if who not in nonces:
            nonces[who] = registry.nonce(who)
        hashes.append(hashed)
        signers.append(who)
        typed.append(
            eip712.record_grant(
                **domain,
                dataset_id=chain_id,
                node_id=node.node_id,
                grant_hash=hashed,
                nonce=nonces[who],
            )
        )
        nonces[who] += 1
    return UploadPlan(
        dataset_id=dataset_id,
        version=version,
        previous=previous,
        manifest_sha256=manifest_sha256,
        signer=signer_address,
        manifest_typed=manifest_typed,
        grant_hashes=tuple(hashes),
        grants_typed=tuple(typed),
        grant_signers=tuple(signers),
    )


def _signed_by(
    typed: dict[str, Any],
    signature: str | None,
    signer: str,
    member: Member,
    what: str = "the manifest",
) -> bytes:
    if signer == member.governance_address:
        return member_signature(member, typed, signature)
    if not signature:
        raise ServiceError(f"the signature of {what} by {signer} is required")
    sig = parse_signature(signature)
    recovered = recover_signer(typed, sig)
    if recovered != signer:
        raise ServiceError(
            f"the signature of {what} is by {recovered}, not by {signer}: sign its typed data again"
        )
    relay_budget_spend(member_id=member.pk, member_name=member.name)
    return sig


def _grant_signed(
    plan: UploadPlan, member: Member, grant: GrantRequest, typed: dict[str, Any], signer: str
) -> bytes:
    """The grant's signature, checked against the signer the plan chose for it."""
    node = grant.node
    try:
        return _signed_by(typed, grant.signature, signer, member, f"the grant to node {node}")
    except ServiceError as exc:
        if signer == plan.signer:
            raise
        # The manifest signer is a Data delegate and this node is another member's.
        raise ServiceError(
            f"node {node} is {node.member.name}'s, so its grant takes {member.name}'s governance "
            f"key: {exc}. Or leave it out, and have the admin add it once the version is "
            f"anchored (POST /api/v1/datasets/{plan.dataset_id}/grants/add/)"
        ) from None


def _hex(sig: bytes) -> str:
    return "0x" + sig.hex()


# Uploads


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value, unit = size / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}"


def upload_quota_check(*, member: Member, adding: int) -> None:
    """Refuse a new upload that would put more than the member's quota of ciphertext in flight.

    In flight: the declared size of every open, unexpired upload of the member's datasets,
    kept until committed, aborted or cleaned up after DATASET_UPLOAD_EXPIRY_HOURS.
    """
    quota = int(settings.DATASET_UPLOAD_QUOTA_BYTES)
    in_flight = (
        Upload.objects.filter(
            dataset__owner=member, state=Upload.State.OPEN, expires_at__gt=timezone.now()
        ).aggregate(total=Sum("version__ciphertext_size"))["total"]
        or 0
    )
    if in_flight + adding > quota:
        raise QuotaExceeded(
            f"{member.name} has {_size(in_flight)} of uploads in progress; this one adds "
            f"{_size(adding)}, over its quota of {_size(quota)}: finish or abort an open upload "
            "first (or ask the operator to raise DATASET_UPLOAD_QUOTA_BYTES)",
            code="quota_exceeded",
        )


def upload_create(
    *,
    user: AbstractBaseUser,
    member: Member,
    dataset_id: uuid.UUID,
    title: str,
    manifest: Any,
    signer: str | None,
    signature: str | None,
    grants: Sequence[GrantRequest],
) -> tuple[Upload, bool]:
    """Open the upload of a signed manifest; returns (upload, created).

    Posting the same signed manifest again returns its open upload, so a
    client that lost its upload id resumes where it stopped.
    """
    try:
        summary = check_manifest(
            manifest,
            dataset_id=dataset_id,
            max_chunk_bytes=max_chunk_bytes(),
            max_bytes=max_dataset_bytes(),
        )
    except ManifestInvalid as exc:
        raise ServiceError(str(exc), code="invalid_manifest") from None
    owner = manifest.get("owner")
    if owner is not None and str(owner).lower() != member.governance_address.lower():
        raise ServiceError(
            f"the manifest names owner {owner}, not {member.name} ({member.governance_address})"
        )
    hashed = manifest_hash(manifest)
    existing = Upload.objects.filter(
        version__manifest_sha256=hashed, state=Upload.State.OPEN, version__dataset__owner=member
    ).first()
    if existing is not None:
        return existing, False
    if DatasetVersion.objects.filter(manifest_sha256=hashed).exists():
        raise ServiceError("this manifest was already uploaded", code="duplicate_manifest")
    if Upload.objects.filter(dataset_id=dataset_id, state=Upload.State.OPEN).exists():
        raise ServiceError(
            f"dataset {dataset_id} has an upload in progress: finish or abort it first",
            code="upload_in_progress",
        )
    nodes = [g.node for g in grants]
    if len({n.pk for n in nodes}) != len(nodes):
        raise ServiceError("each node may have only one grant per version")
    grant_hashes = [
        grant_hash(manifest_sha256=hashed, node_id=g.node.node_id, wrapped_key=g.wrapped_key)
        for g in grants
    ]
    plan = upload_plan(
        member=member,
        dataset_id=dataset_id,
        manifest_sha256=hashed,
        signer=signer,
        grants=list(zip(nodes, grant_hashes, strict=True)),
    )
    manifest_sig = _signed_by(plan.manifest_typed, signature, plan.signer, member)
    grant_sigs = [
        _grant_signed(plan, member, g, typed, signer)
        for g, typed, signer in zip(grants, plan.grants_typed, plan.grant_signers, strict=True)
    ]
    with transaction.atomic():
        # One member's uploads open one at a time here, so two cannot both pass the quota.
        Member.objects.select_for_update().filter(pk=member.pk).first()
        upload_quota_check(member=member, adding=summary.ciphertext_size)
        dataset, _ = Dataset.objects.get_or_create(
            pk=dataset_id,
            defaults={"owner": member, "title": title.strip() or f"Dataset {dataset_id}"},
        )
        version = DatasetVersion.objects.create(
            dataset=dataset,
            number=plan.version,
            manifest=manifest,
            manifest_sha256=hashed,
            signature=_hex(manifest_sig),
            signer_address=plan.signer,
            signature_nonce=int(plan.manifest_typed["message"]["nonce"]),
            previous=plan.previous,
            chunk_count=len(summary.chunks),
            ciphertext_size=summary.ciphertext_size,
        )
        for g, hashed_grant, sig, typed, signer in zip(
            grants, grant_hashes, grant_sigs, plan.grants_typed, plan.grant_signers, strict=True
        ):
            Grant.objects.create(
                version=version,
                node=g.node,
                wrapped_key="0x" + g.wrapped_key.hex(),
                grant_hash=hashed_grant,
                signature=_hex(sig),
                signer_address=signer,
                signature_nonce=int(typed["message"]["nonce"]),
                cross_member=g.node.member_id != member.pk,
            )
        upload = Upload.objects.create(
            dataset=dataset,
            version=version,
            dataset_uuid=dataset_id,
            version_number=plan.version,
            created_by=user,  # type: ignore[misc]
            expected_chunks=len(summary.chunks),
        )
    return upload, True


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
        while block := f.read(RECORD_READ):
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
        receipt = registry.anchor_manifest_by_sig(
            dataset_id=version.dataset.chain_id,
            version=version.number,
            manifest_hash=version.manifest_sha256,
            previous=version.previous,
            signer=version.signer_address,
            signature=version.signature,
        )
    except ContractError as exc:
        upload_discard(
            upload=upload, state=Upload.State.FAILED, reason=f"the chain refused the anchor: {exc}"
        )
        raise
    mirror_receipt(registry, receipt)
    problems = []
    for grant in version.grants.filter(state=Grant.State.PENDING).select_related("node"):
        try:
            _record_grant(registry, grant)
        except ContractError as exc:
            problems.append(f"grant to node {grant.node.node_id} was refused: {exc}")
            grant.delete()
    upload.refresh_from_db()
    upload.state = Upload.State.COMMITTED
    upload.error = "; ".join(problems)
    upload.save(update_fields=["state", "error", "updated_at"])
    return upload


def _record_grant(registry: DatasetRegistry, grant: Grant) -> None:
    receipt = registry.record_grant_by_sig(
        dataset_id=grant.version.dataset.chain_id,
        node_id=grant.node.node_id,
        grant_hash=grant.grant_hash,
        signer=grant.signer_address,
        signature=grant.signature,
    )
    mirror_receipt(registry, receipt)


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


def mirror_receipt(registry: DatasetRegistry, receipt: TxReceipt) -> None:
    """Apply the receipt's events at once, so the next read already shows them."""
    from portal.datasets.handlers import HANDLERS

    for event in registry.decode_events(receipt):
        handler = HANDLERS.get(event.name)
        if handler is not None:
            handler(event)


# Owner actions: grants and withdrawal


def grant_add_signer(*, dataset: Dataset, node: Node, signer: str | None) -> str:
    """The governance address (``signer`` left out) or a Data delegate granting an own node."""
    owner = dataset.owner
    address = _signer_for(owner, signer)
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
    registry = dataset_registry()
    typed = registry.record_grant_typed(
        signer=address,
        dataset_id=dataset.chain_id,
        node_id=node.node_id,
        grant_hash=hashed,
    )
    return version, hashed, typed


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
    sig = _signed_by(typed, signature, address, dataset.owner, f"the grant to node {node}")
    grant = Grant.objects.create(
        version=version,
        node=node,
        wrapped_key="0x" + raw.hex(),
        grant_hash=hashed,
        signature=_hex(sig),
        signer_address=address,
        signature_nonce=int(typed["message"]["nonce"]),
        cross_member=node.member_id != dataset.owner_id,
    )
    try:
        _record_grant(dataset_registry(), grant)
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
    return registry.revoke_grant_typed(
        signer=dataset.owner.governance_address,
        dataset_id=dataset.chain_id,
        node_id=grant.node.node_id,
    )


def grant_revoke(*, grant: Grant, signature: str | None) -> Grant:
    """Revoke one version's grant to one node, on chain: the portal releases nothing more
    to that node (a key it already unwrapped cannot be recalled)."""
    typed = grant_revoke_typed_data(grant=grant)
    dataset = grant.version.dataset
    sig = member_signature(dataset.owner, typed, signature)
    registry = dataset_registry()
    receipt = registry.revoke_grant_by_sig(
        dataset_id=dataset.chain_id,
        node_id=grant.node.node_id,
        signer=dataset.owner.governance_address,
        signature=sig,
    )
    mirror_receipt(registry, receipt)
    grant.refresh_from_db()
    return grant


def withdraw_typed_data(*, dataset: Dataset) -> dict[str, Any]:
    return dataset_registry().withdraw_typed(
        signer=dataset.owner.governance_address, dataset_id=dataset.chain_id
    )


def dataset_withdraw(*, dataset: Dataset, signature: str | None) -> Dataset:
    """Withdraw for good, on chain: no release of its ciphertext from then on."""
    if dataset.status == Dataset.Status.WITHDRAWN:
        raise ServiceError(f"{dataset.title} is already withdrawn")
    typed = withdraw_typed_data(dataset=dataset)
    sig = member_signature(dataset.owner, typed, signature)
    registry = dataset_registry()
    receipt = registry.withdraw_by_sig(
        dataset_id=dataset.chain_id, signer=dataset.owner.governance_address, signature=sig
    )
    mirror_receipt(registry, receipt)
    dataset.refresh_from_db()
    return dataset


# Node access: every release and refusal is logged


def access_log(
    *,
    dataset: Dataset,
    action: str,
    what: str,
    node: Node | None = None,
    user: AbstractBaseUser | None = None,
    version: DatasetVersion | None = None,
    chunk: int | None = None,
    detail: str = "",
) -> AccessLog:
    return AccessLog.objects.create(
        dataset=dataset,
        version=version,
        chunk=chunk,
        node=node,
        user=user,  # type: ignore[misc]
        action=action,
        what=what,
        detail=detail[:2000],
    )


def _refuse(
    dataset: Dataset, node: Node, what: str, reason: str, version: DatasetVersion | None = None
) -> Refused:
    access_log(
        dataset=dataset,
        node=node,
        user=node.user,
        version=version,
        action=AccessLog.Action.REFUSE,
        what=what,
        detail=reason,
    )
    return Refused(reason, code="refused")


def node_grant(
    *, node: Node, dataset: Dataset, version_number: int | None, what: str, chunk: int | None = None
) -> Grant:
    """The node's active grant on the version, or Refused (logged) saying why not."""
    if dataset.status != Dataset.Status.ACTIVE:
        raise _refuse(dataset, node, what, f"{dataset.title} is {dataset.get_status_display()}")
    # The chain freezes a removed member's datasets and grants as they were: the portal
    # itself stops releasing them, and stops releasing anything to a removed member's nodes.
    for member, whose in ((dataset.owner, "its owner"), (node.member, "the node's member")):
        if not member.is_active:
            reason = (
                f"{whose}, {member.name}, is {member.get_status_display().lower()} in the "
                "consortium: nothing is released"
            )
            raise _refuse(dataset, node, what, reason)
    grants = Grant.objects.select_related("version").filter(
        version__dataset=dataset,
        node=node,
        state=Grant.State.ACTIVE,
        version__state=DatasetVersion.State.ANCHORED,
    )
    if version_number is not None:
        grants = grants.filter(version__number=version_number)
    grant = grants.order_by("-version__number").first()
    if grant is None:
        which = f"version {version_number} of " if version_number else ""
        raise _refuse(
            dataset,
            node,
            what,
            f"node {node.node_id} holds no active grant on {which}{dataset.title}: "
            "ask its owner for a grant",
        )
    if chunk is not None and not 0 <= chunk < grant.version.chunk_count:
        raise _refuse(
            dataset, node, what, f"chunk {chunk} is not in the manifest", version=grant.version
        )
    return grant


def node_release_manifest(*, node: Node, dataset: Dataset, version_number: int | None) -> Grant:
    grant = node_grant(node=node, dataset=dataset, version_number=version_number, what="manifest")
    on_chain = dataset_registry().grant_of(dataset.chain_id, node.node_id)
    if not on_chain.active or "0x" + on_chain.grant_hash.hex() != grant.grant_hash:
        raise _refuse(
            dataset, node, "manifest", "the chain does not hold this grant", grant.version
        )
    access_log(
        dataset=dataset,
        node=node,
        user=node.user,
        version=grant.version,
        action=AccessLog.Action.RELEASE,
        what="manifest",
        detail="manifest and wrapped key",
    )
    return grant


def _chain_grant_hash(dataset: Dataset, node: Node) -> str | None:
    """The grant hash in force on chain for the node, or None; cached for
    DATASET_GRANT_CHECK_SECONDS so a fetch of many chunks reads the chain once."""
    key = f"datasets:chain-grant:{dataset.pk}:{node.node_id}"
    cached = cache.get(key)
    if cached is None:
        on_chain = dataset_registry().grant_of(dataset.chain_id, node.node_id)
        cached = "0x" + on_chain.grant_hash.hex() if on_chain.active else ""
        cache.set(key, cached, timeout=int(settings.DATASET_GRANT_CHECK_SECONDS))
    return cached or None


def node_release_chunk(
    *, node: Node, dataset: Dataset, version_number: int, index: int
) -> tuple[DatasetVersion, str]:
    """The storage path of a ciphertext chunk the node may fetch; the release is logged.

    The chain's grant is checked too, not only the mirror's (a revocation the portal has not
    mirrored yet stops releases within DATASET_GRANT_CHECK_SECONDS).
    """
    grant = node_grant(
        node=node, dataset=dataset, version_number=version_number, what="chunk", chunk=index
    )
    if _chain_grant_hash(dataset, node) != grant.grant_hash:
        raise _refuse(dataset, node, "chunk", "the chain does not hold this grant", grant.version)
    access_log(
        dataset=dataset,
        node=node,
        user=node.user,
        version=grant.version,
        chunk=index,
        action=AccessLog.Action.RELEASE,
        what="chunk",
    )
    return grant.version, grant.version.chunk_path(index)


def _reports_rate_check(node: Node) -> None:
    """A node's reports are its own word: at most DATASET_NODE_REPORTS_PER_HOUR of them, so a
    node cannot flood the owner's access log."""
    limit = int(settings.DATASET_NODE_REPORTS_PER_HOUR)
    since = timezone.now() - timedelta(hours=1)
    recent = AccessLog.objects.filter(node=node, what="dataset", at__gte=since).count()
    if recent >= limit:
        raise TooManyReports(
            f"node {node.node_id} sent {recent} reports in the last hour, the most allowed "
            f"(DATASET_NODE_REPORTS_PER_HOUR={limit}); report again later",
            code="throttled",
        )


def node_report(
    *, node: Node, dataset: Dataset, version_number: int, ok: bool, reason: str
) -> AccessLog:
    """What the node did with a version: decrypted it, or refused it with the reason."""
    version = dataset.versions.filter(number=version_number).first()
    if version is None:
        raise ServiceError(f"{dataset.title} has no version {version_number}")
    if not Grant.objects.filter(version=version, node=node).exists():
        raise Refused(f"node {node.node_id} was never granted version {version_number}")
    _reports_rate_check(node)
    return access_log(
        dataset=dataset,
        node=node,
        user=node.user,
        version=version,
        action=AccessLog.Action.DECRYPT if ok else AccessLog.Action.REFUSE,
        what="dataset",
        detail=reason or ("decrypted and verified" if ok else "refused by the node"),
    )
