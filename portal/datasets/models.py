"""Encrypted datasets: versions (signed manifests anchored on chain), their
resumable uploads, grants of the data key to training nodes, and the access log.

The portal holds ciphertext, manifests and wrapped keys only; never a key that
opens them. A version is visible once its manifest hash is anchored on chain.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from chain.dataset_registry import dataset_id_of
from portal.consortium.models import Member
from portal.nodes.models import Node


def chain_dataset_id(member_id: int, dataset_uuid: uuid.UUID) -> str:
    """A dataset's bytes32 id on chain: its owner's member id in the high 128 bits, its UUID
    in the low 128 (the contract refuses an anchor under another member's id)."""
    return "0x" + dataset_id_of(member_id, dataset_uuid).hex()


class Dataset(models.Model):
    """One dataset of one member; its content lives in its versions."""

    class Status(models.TextChoices):
        UPLOADING = "uploading", "Uploading (not visible)"
        ACTIVE = "active", "Active"
        WITHDRAWN = "withdrawn", "Withdrawn"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="datasets")
    title = models.CharField(max_length=200)
    modality = models.CharField(max_length=64, blank=True)
    instances = models.PositiveIntegerField(default=0)
    annotated_instances = models.PositiveIntegerField(default=0)
    boxes = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADING)
    withdrawn_tx = models.CharField(max_length=66, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.title} ({self.owner})"

    @property
    def chain_id(self) -> str:
        member_id = self.owner.chain_member_id
        if member_id is None:
            raise ValueError(f"{self.owner} has no member id on chain")
        return chain_dataset_id(member_id, self.id)

    @property
    def latest_version(self) -> DatasetVersion | None:
        return self.versions.filter(state=DatasetVersion.State.ANCHORED).order_by("-number").first()


ZERO_HASH = "0x" + "0" * 64


class DatasetVersion(models.Model):
    """A signed manifest; visible once its SHA-256 is anchored on chain."""

    class State(models.TextChoices):
        UPLOADING = "uploading", "Uploading"
        ANCHORED = "anchored", "Anchored"
        WITHDRAWN = "withdrawn", "Withdrawn"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    manifest = models.JSONField()
    manifest_sha256 = models.CharField(max_length=66, unique=True, help_text="0x + 64 hex")
    signature = models.CharField(max_length=132)
    signer_address = models.CharField(max_length=42)
    signature_nonce = models.PositiveBigIntegerField(help_text="the signer's nonce when signed")
    previous = models.CharField(max_length=66, default=ZERO_HASH)
    chunk_count = models.PositiveIntegerField()
    ciphertext_size = models.PositiveBigIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.UPLOADING)
    anchored_tx = models.CharField(max_length=66, blank=True)
    anchored_block = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="one_version_number")
        ]

    def __str__(self) -> str:
        return f"{self.dataset.title} v{self.number}"

    def chunk_path(self, index: int) -> str:
        return chunk_storage_path(self.dataset_id, self.number, index)


def chunk_storage_path(dataset_id: uuid.UUID, version: int, index: int) -> str:
    """Where ciphertext chunk ``index`` lives in the default storage."""
    return f"datasets/{dataset_id}/v{version}/{index:08d}.chunk"


def _upload_expiry() -> datetime:
    hours = settings.DATASET_UPLOAD_EXPIRY_HOURS
    return timezone.now() + timedelta(hours=hours)


class Upload(models.Model):
    """A resumable upload of one version's ciphertext chunks."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        COMMITTED = "committed", "Committed"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired and cleaned up"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey(
        Dataset, on_delete=models.SET_NULL, null=True, blank=True, related_name="uploads"
    )
    version = models.OneToOneField(
        DatasetVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="upload"
    )
    # Kept after a failure deletes the version, to say what was attempted.
    dataset_uuid = models.UUIDField()
    version_number = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    expected_chunks = models.PositiveIntegerField()
    received = models.JSONField(default=list, help_text="indexes of the chunks stored so far")
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(default=_upload_expiry)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"upload {self.id} of {self.dataset_uuid} v{self.version_number} ({self.state})"

    @property
    def missing(self) -> list[int]:
        have = set(self.received)
        return [i for i in range(self.expected_chunks) if i not in have]


class Grant(models.Model):
    """The data key of one version wrapped to one training node, signed by the owner."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending (recorded at commit)"
        ACTIVE = "active", "Active"
        REPLACED = "replaced", "Replaced by a newer grant"
        REVOKED = "revoked", "Revoked"

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="grants")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="dataset_grants")
    wrapped_key = models.CharField(max_length=200, help_text="0x + hex of the 92-byte wrapped key")
    grant_hash = models.CharField(max_length=66)
    signature = models.CharField(max_length=132)
    signer_address = models.CharField(max_length=42)
    signature_nonce = models.PositiveBigIntegerField(help_text="the owner's nonce when signed")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    cross_member = models.BooleanField(default=False)
    recorded_tx = models.CharField(max_length=66, blank=True)
    recorded_block = models.PositiveBigIntegerField(null=True, blank=True)
    revoked_tx = models.CharField(max_length=66, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["version", "created_at"]

    def __str__(self) -> str:
        return f"{self.version} → {self.node} ({self.state})"


class AccessLog(models.Model):
    """Every release of ciphertext, every decryption and every refusal: who, what, when."""

    class Action(models.TextChoices):
        RELEASE = "release", "Released"
        DECRYPT = "decrypt", "Decrypted on the node"
        REFUSE = "refuse", "Refused"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="access_log")
    version = models.ForeignKey(
        DatasetVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    chunk = models.PositiveIntegerField(null=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    node = models.ForeignKey(
        Node, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=16, choices=Action.choices)
    what = models.CharField(max_length=32, help_text="manifest, chunk or dataset")
    detail = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        who = self.node or self.user or "anonymous"
        return f"{self.at:%Y-%m-%d %H:%M} {who} {self.action} {self.what}"

    @property
    def self_reported(self) -> bool:
        """A node's own word about what it did with a version (decrypted or refused it),
        not something the portal saw happen: the portal logs releases itself."""
        return self.what == "dataset" and self.node_id is not None
