"""What the dataset routes answer and take, shared by the catalogue, upload and node routes."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.core.serializers import (
    OutputSerializer,
    hex_field,
    signature_field,
    timestamps,
)
from portal.datasets import selectors
from portal.datasets.models import Dataset, chain_dataset_id
from training.crypto import WRAPPED_KEY_SIZE


class OwnerSerializer(OutputSerializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    governance_address = serializers.CharField()
    chain_member_id = serializers.IntegerField(allow_null=True)


class VersionSummarySerializer(OutputSerializer):
    number = serializers.IntegerField()
    state = serializers.CharField()
    manifest_sha256 = serializers.CharField(help_text="the hash anchored on chain")
    previous = serializers.CharField()
    signer_address = serializers.CharField()
    chunk_count = serializers.IntegerField()
    ciphertext_size = serializers.IntegerField()
    anchored_tx = serializers.CharField()
    anchored_block = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class DatasetOutputSerializer(OutputSerializer):
    """A catalogue entry: who owns it, what it holds, its anchor; never its content."""

    id = serializers.UUIDField()
    chain_id = serializers.CharField(help_text="the bytes32 dataset id on chain")
    title = serializers.CharField()
    owner = OwnerSerializer()
    modality = serializers.CharField()
    instances = serializers.IntegerField()
    annotated_instances = serializers.IntegerField()
    boxes = serializers.IntegerField()
    status = serializers.CharField(help_text="active or withdrawn")
    withdrawn_tx = serializers.CharField()
    version = serializers.SerializerMethodField(help_text="the newest anchored or withdrawn one")
    created_at = serializers.DateTimeField()

    @extend_schema_field(VersionSummarySerializer(allow_null=True))
    def get_version(self, dataset: Dataset | dict[str, Any]) -> dict[str, Any] | None:
        if isinstance(dataset, dict):  # a row of selectors.catalogue_page: the newest, or None
            latest: Any = dataset["version"]
            return None if latest is None else self._version_summary.to_representation(latest)
        # A dataset: its ``shown_versions`` if prefetched (newest first), else one query.
        shown = getattr(dataset, "shown_versions", None)
        if shown is None:
            shown_qs = dataset.versions.exclude(state="uploading").defer("manifest")
            latest = shown_qs.order_by("-number").first()
        else:
            latest = shown[0] if shown else None
        if latest is None:
            return None
        return self._version_summary.to_representation(latest)  # type: ignore[no-any-return]

    @cached_property
    def _version_summary(self) -> VersionSummarySerializer:
        # One for the whole page (a list shares this serializer across its rows): a
        # serializer built per row copies its fields per row, most of a page's time.
        return VersionSummarySerializer()


def catalogue_entry(dataset: Dataset) -> dict[str, Any]:
    return DatasetOutputSerializer(dataset).data  # type: ignore[return-value]


def catalogue_entries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page of ``selectors.catalogue_rows`` as ``DatasetOutputSerializer`` answers each
    entry, field for field and in its order, built as plain dicts: through DRF's fields,
    even ``OutputSerializer``'s, the page's 1,300 values cost half of the route's CPU.

    Each column already has the type its field answers (an integer column an int, a text
    one a str) but for the UUID and the timestamps, which rows read with ``iso_timestamps``
    hold as the text the field answers (``iso_timestamps()`` says when they may). A page
    with an owner that has no member id on chain (whose ``chain_id`` a dataset cannot
    tell) goes through the serializer, as before. tests/portal/datasets/test_catalogue_rows.py
    checks the entries against the serializer's.
    """
    if any(row["owner__chain_member_id"] is None for row in rows):
        for row in rows:  # DRF's DateTimeField answers a text as it is
            if "created_at_iso" in row:
                row["created_at"] = row.pop("created_at_iso")
                row["shown__created_at"] = row.pop("shown_created_at_iso")
        page = selectors.catalogue_page(rows)
        return DatasetOutputSerializer(page, many=True).data  # type: ignore[return-value]
    timestamp = timestamps()
    entries = []
    for row in rows:
        owner_id = row["owner__chain_member_id"]
        number = row["shown__number"]
        if "created_at_iso" in row:
            created, version_created = row["created_at_iso"], row["shown_created_at_iso"]
        else:
            created, version_created = row["created_at"], row["shown__created_at"]
            created = timestamp(created)
            version_created = None if number is None else timestamp(version_created)
        entries.append(
            {
                "id": str(row["id"]),
                "chain_id": chain_dataset_id(owner_id, row["id"]),
                "title": row["title"],
                "owner": {
                    "id": row["owner__id"],
                    "name": row["owner__name"],
                    "governance_address": row["owner__governance_address"],
                    "chain_member_id": owner_id,
                },
                "modality": row["modality"],
                "instances": row["instances"],
                "annotated_instances": row["annotated_instances"],
                "boxes": row["boxes"],
                "status": row["status"],
                "withdrawn_tx": row["withdrawn_tx"],
                "version": None
                if number is None
                else {
                    "number": number,
                    "state": row["shown__state"],
                    "manifest_sha256": row["shown__manifest_sha256"],
                    "previous": row["shown__previous"],
                    "signer_address": row["shown__signer_address"],
                    "chunk_count": row["shown__chunk_count"],
                    "ciphertext_size": row["shown__ciphertext_size"],
                    "anchored_tx": row["shown__anchored_tx"],
                    "anchored_block": row["shown__anchored_block"],
                    "created_at": version_created,
                },
                "created_at": created,
            }
        )
    return entries


def node_id_field() -> serializers.RegexField:
    return hex_field(64, "a bytes32 node id", help_text="the training node's bytes32 id")


def wrapped_key_field() -> serializers.RegexField:
    return hex_field(
        2 * WRAPPED_KEY_SIZE,
        f"the {WRAPPED_KEY_SIZE}-byte wrapped key",
        help_text=f"hex of the {WRAPPED_KEY_SIZE}-byte key wrapped to the node",
    )


def signer_field() -> serializers.RegexField:
    return hex_field(
        40,
        "an Ethereum address",
        required=False,
        allow_blank=True,
        help_text="the governance address or a Data delegate's; the governance address if blank",
    )


def grant_signer_field() -> serializers.RegexField:
    return hex_field(
        40,
        "an Ethereum address",
        required=False,
        allow_blank=True,
        help_text=(
            "a Data delegate of the owner, for a node of the owner's own; left out, the "
            "governance address (a grant to another member's node takes that key)"
        ),
    )


GRANT_SIGNATURE = (
    "the grant's signer (RecordGrant): the owner's governance key, or for the owner's own "
    "node the Data delegate that signs the manifest"
)


class GrantKeySerializer(serializers.Serializer):
    node_id = node_id_field()
    wrapped_key = wrapped_key_field()


class GrantInputSerializer(GrantKeySerializer):
    signature = signature_field(GRANT_SIGNATURE)
