"""Opening an upload: the typed data a new version's signers sign, and the signed manifest
with its grants checked and recorded, within the member's quota of uploads in flight."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from portal.consortium.models import Member
from portal.core import relay
from portal.core.exceptions import ServiceError, TooLarge
from portal.core.signing import parse_bytes32
from portal.datasets.manifest import ManifestInvalid, check_manifest, grant_hash, manifest_hash
from portal.datasets.models import (
    ZERO_HASH,
    Dataset,
    DatasetVersion,
    Grant,
    Upload,
    chain_dataset_id,
)
from portal.datasets.services.chain import (
    dataset_registry,
    grant_signer,
    hex_signature,
    signed_by,
    signer_for,
)
from portal.nodes.models import Node


class QuotaExceeded(TooLarge):
    """More ciphertext in flight than the member's upload quota allows."""


def max_chunk_bytes() -> int:
    return int(settings.DATASET_MAX_CHUNK_BYTES)


def max_dataset_bytes() -> int:
    return int(settings.DATASET_MAX_BYTES)


@dataclass(frozen=True)
class GrantRequest:
    node: Node
    wrapped_key: bytes
    signature: str | None = None


@dataclass(frozen=True)
class UploadPlan:
    """The next version of a dataset and the typed data its signers sign."""

    dataset_id: uuid.UUID
    version: int
    previous: str
    manifest_sha256: str
    signer: str
    manifest_typed: dict[str, Any]
    grant_hashes: tuple[str, ...]
    grants_typed: tuple[dict[str, Any], ...]
    grant_signers: tuple[str, ...]


def upload_plan(
    *,
    member: Member,
    dataset_id: uuid.UUID,
    manifest_sha256: str,
    signer: str | None,
    grants: Sequence[tuple[Node, str]],
) -> UploadPlan:
    """Version, previous hash and typed data for a new version, as the chain expects them now.

    Each grant takes its signer's next nonce for its (dataset, node) pair, apart from the
    manifest's and the other grants' (see ``grant_signer`` for who signs): one the chain
    refuses, or one left unsigned, holds up none of the others.
    """
    if not member.is_active or member.chain_member_id is None:
        raise ServiceError(f"{member.name} is not an active consortium member")
    manifest_sha256 = parse_bytes32(manifest_sha256, "manifest hash")
    signer_address = signer_for(member, signer)
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
    manifest_typed = relay.typed_data(
        "AnchorManifest",
        {
            "datasetId": chain_id,
            "version": version,
            "manifestHash": manifest_sha256,
            "previous": previous,
        },
        signer=signer_address,
    )
    hashes: list[str] = []
    typed: list[dict[str, Any]] = []
    signers: list[str] = []
    for node, hashed in grants:
        who = grant_signer(member=member, signer=signer_address, node=node)
        hashes.append(hashed)
        signers.append(who)
        message = {"datasetId": chain_id, "nodeId": node.node_id, "grantHash": hashed}
        typed.append(relay.typed_data("RecordGrant", message, signer=who))
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


def _grant_signed(
    plan: UploadPlan, member: Member, grant: GrantRequest, typed: dict[str, Any], signer: str
) -> bytes:
    """The grant's signature, checked against the signer the plan chose for it."""
    node = grant.node
    try:
        return signed_by(typed, grant.signature, signer, member, f"the grant to node {node}")
    except ServiceError as exc:
        if signer == plan.signer:
            raise
        # The manifest signer is a Data delegate and this node is another member's.
        raise ServiceError(
            f"node {node} is {node.member.name}'s, so its grant takes {member.name}'s governance "
            f"key: {exc}. Or leave it out, and have the admin add it once the version is "
            f"anchored (POST /api/v1/datasets/{plan.dataset_id}/grants/add/)"
        ) from None


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
    manifest_sig = signed_by(plan.manifest_typed, signature, plan.signer, member)
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
            signature=hex_signature(manifest_sig),
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
                signature=hex_signature(sig),
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
