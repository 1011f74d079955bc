"""Who sees which dataset rows. Permission rules live here, once.

Every staff member of an active member sees the catalogue (owner, counts,
modality, version, anchor) but no content; only the owner's staff see its
versions' manifests, grants, uploads and access log.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import FilteredRelation, OuterRef, Q, QuerySet, Subquery

from portal.consortium.models import Member, Staff
from portal.consortium.selectors import staff_of
from portal.core.exceptions import Forbidden, NotFound
from portal.core.prepared import IsoTimestamp, PreparedRows
from portal.core.signing import parse_bytes32
from portal.datasets.models import (
    AccessLog,
    Dataset,
    DatasetVersion,
    Grant,
    Upload,
    chain_dataset_id,
)

User = AbstractBaseUser | AnonymousUser

VISIBLE = (Dataset.Status.ACTIVE, Dataset.Status.WITHDRAWN)
UPLOADER_ROLES = (Staff.Role.ADMIN, Staff.Role.STEWARD)


def viewer_member(viewer: User) -> Member | None:
    """The viewer's member if it is an active consortium member."""
    staff = staff_of(viewer)
    return staff.member if staff is not None and staff.member.is_active else None


def uploader_member(viewer: User) -> Member | None:
    """The member the viewer may upload and manage datasets for (its admin or data steward)."""
    staff = staff_of(viewer)
    if staff is None or not staff.member.is_active or staff.role not in UPLOADER_ROLES:
        return None
    return staff.member


def dataset_list(*, viewer: User) -> QuerySet[Dataset]:
    """The catalogue: anchored datasets, for staff of active members only."""
    if viewer_member(viewer) is None:
        return Dataset.objects.none()
    return _visible()


def _visible() -> QuerySet[Dataset]:
    return Dataset.objects.select_related("owner").filter(status__in=VISIBLE)


#: what a catalogue entry shows of a version (VersionSummarySerializer): everything but its
#: manifest, which is the large part of the row (a chunk entry per 4 MiB) and only the
#: owner's version list shows.
VERSION_SUMMARY_FIELDS = (
    "number",
    "state",
    "manifest_sha256",
    "previous",
    "signer_address",
    "chunk_count",
    "ciphertext_size",
    "anchored_tx",
    "anchored_block",
    "created_at",
)

#: what a catalogue entry shows of a dataset and of its owner (DatasetOutputSerializer):
#: under load every column read is parsed and kept per row, timestamps most of all.
CATALOGUE_FIELDS = (
    "id",
    "title",
    "modality",
    "instances",
    "annotated_instances",
    "boxes",
    "status",
    "withdrawn_tx",
    "created_at",
    "owner__id",
    "owner__name",
    "owner__governance_address",
    "owner__chain_member_id",
)
#: the owner's columns among them, as a catalogue entry's ``owner`` shows them
OWNER_FIELDS = ("id", "name", "governance_address", "chain_member_id")


def catalogue_rows(*, viewer: User, iso_timestamps: bool = False) -> QuerySet[Any] | PreparedRows:
    """The catalogue, newest first, as plain rows (``values()``): the columns a catalogue
    entry shows of each dataset, of its owner and of its newest shown version (none of its
    manifest), in one query whatever the page's length; ``catalogue_page`` shapes a page
    of them. A page of 50 entries built as model instances (dataset, owner and version:
    150 of them) cost more CPU than the database took to read it.

    ``iso_timestamps``: the two timestamps as the API writes them in UTC (``IsoTimestamp``),
    in ``created_at_iso`` and ``shown_created_at_iso`` instead of ``created_at`` and
    ``shown__created_at`` (serializers.catalogue_entries reads either)."""
    if viewer_member(viewer) is None:
        return Dataset.objects.none()
    return _catalogue(iso_timestamps)


@functools.cache
def _catalogue(iso_timestamps: bool) -> PreparedRows:
    """``catalogue_rows``'s query, built once per process and its SQL compiled once per
    database: it is the same for every viewer who may see it, building it (23 columns
    over three joined tables) cost a fifth of the route's CPU time and compiling it a
    sixth (docs/load.md)."""
    newest = (
        DatasetVersion.objects.filter(dataset_id=OuterRef("pk"))
        .exclude(state=DatasetVersion.State.UPLOADING)
        .order_by("-number")
        .values("number")[:1]
    )
    shown = FilteredRelation("versions", condition=Q(versions__number=Subquery(newest)))
    rows = _visible().annotate(shown=shown).order_by("-created_at", "pk")
    dataset = CATALOGUE_FIELDS
    version = tuple(f"shown__{name}" for name in VERSION_SUMMARY_FIELDS)
    if not iso_timestamps:
        return PreparedRows(rows.values(*dataset, *version))
    return PreparedRows(
        rows.values(
            *(name for name in dataset if name != "created_at"),
            *(name for name in version if name != "shown__created_at"),
            created_at_iso=IsoTimestamp("created_at"),
            shown_created_at_iso=IsoTimestamp("shown__created_at"),
        )
    )


def catalogue_page(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page of ``catalogue_rows`` as a catalogue entry reads it (DatasetOutputSerializer):
    its owner's columns as ``owner``, its ``chain_id`` (absent, as ``Dataset.chain_id``
    fails, while the owner has no member id on chain), and its newest shown version's
    columns as ``version`` (None if it has none)."""
    for row in rows:
        owner = {name: row.pop(f"owner__{name}") for name in OWNER_FIELDS}
        version = {name: row.pop(f"shown__{name}") for name in VERSION_SUMMARY_FIELDS}
        row["owner"] = owner
        if owner["chain_member_id"] is not None:
            row["chain_id"] = chain_dataset_id(owner["chain_member_id"], row["id"])
        row["version"] = None if version["number"] is None else version
    return rows


def owns(*, viewer: User, dataset: Dataset) -> bool:
    """Whether the viewer is an uploader of the dataset's owner (a catalogue row of theirs)."""
    member = uploader_member(viewer)
    return member is not None and dataset.owner_id == member.pk and dataset.status in VISIBLE


def owner_acting(*, viewer: User, dataset: Dataset, verb: str) -> Member:
    """The dataset's owner, for whom the viewer acts in ``verb`` (as its admin or data
    steward); Forbidden otherwise, with the rule a page states."""
    if not owns(viewer=viewer, dataset=dataset):
        who = f"only {dataset.owner.name}'s admin or data stewards"
        raise Forbidden(f"{who} may {verb} this dataset", rule=f"{who} may change this dataset")
    return dataset.owner


#: The signed actions on a dataset, and how a refusal names each.
STEWARD_VERBS = {
    "RecordGrant": "grant access to",
    "RevokeGrant": "revoke grants of",
    "WithdrawDataset": "withdraw",
}


def signer_checks() -> dict[str, Callable[[User, Dataset], Member]]:
    """The owner's admin or data stewards act for it in its datasets' signed actions
    (``relay.register_checks``); the routes find the dataset first (404 otherwise)."""

    def check(verb: str) -> Callable[[User, Dataset], Member]:
        return lambda viewer, dataset: owner_acting(viewer=viewer, dataset=dataset, verb=verb)

    return {name: check(verb) for name, verb in STEWARD_VERBS.items()}


def dataset_get(*, viewer: User, dataset_id: uuid.UUID) -> Dataset | None:
    return dataset_list(viewer=viewer).filter(pk=dataset_id).first()


def owned_dataset_list(*, viewer: User) -> QuerySet[Dataset]:
    member = uploader_member(viewer)
    if member is None:
        return Dataset.objects.none()
    return dataset_list(viewer=viewer).filter(owner=member)


def version_list(*, viewer: User, dataset: Dataset) -> QuerySet[DatasetVersion]:
    if not owns(viewer=viewer, dataset=dataset):
        return DatasetVersion.objects.none()
    return dataset.versions.exclude(state=DatasetVersion.State.UPLOADING).order_by("-number")


def grant_list(*, viewer: User, dataset: Dataset) -> QuerySet[Grant]:
    if not owns(viewer=viewer, dataset=dataset):
        return Grant.objects.none()
    return (
        Grant.objects.select_related("node", "node__member", "version")
        .defer("version__manifest")
        .filter(version__dataset=dataset)
        .exclude(state=Grant.State.PENDING)
        .order_by("-version__number", "created_at")
    )


def grant_get(
    *, viewer: User, dataset: Dataset, node_id: str, version_number: int | None
) -> Grant | None:
    """One grant, for the owner: of a version to a node, or without a version the node's
    newest. A grant in force comes first where a node was granted a version again."""
    grants = grant_list(viewer=viewer, dataset=dataset).filter(node__node_id=node_id)
    if version_number is not None:
        grants = grants.filter(version__number=version_number)
    return grants.filter(state=Grant.State.ACTIVE).first() or grants.first()


def grant_named(
    *, viewer: User, dataset: Dataset, node_id: str, version_number: int | None
) -> Grant:
    """The grant a route or a form names, as ``grant_get`` finds it; NotFound, saying which,
    where the viewer sees none."""
    node_id = parse_bytes32(node_id, "node id")
    grant = grant_get(
        viewer=viewer, dataset=dataset, node_id=node_id, version_number=version_number
    )
    if grant is None:
        which = f"v{version_number} of " if version_number else ""
        raise NotFound(f"node {node_id} holds no grant on {which}{dataset.title}")
    return grant


def access_log_list(*, viewer: User, dataset: Dataset) -> QuerySet[AccessLog]:
    if not owns(viewer=viewer, dataset=dataset):
        return AccessLog.objects.none()
    return (
        AccessLog.objects.select_related("node", "user", "version")
        .defer("version__manifest")
        .filter(dataset=dataset)
    )


def upload_get(*, viewer: User, upload_id: uuid.UUID) -> Upload | None:
    """An upload, to the uploading member's admin and stewards only."""
    member = uploader_member(viewer)
    if member is None:
        return None
    upload = Upload.objects.select_related("version", "dataset").filter(pk=upload_id).first()
    if upload is None:
        return None
    owner_id = upload.dataset.owner_id if upload.dataset else None
    if owner_id is None and upload.created_by_id is not None:
        creator = staff_of(upload.created_by) if upload.created_by else None
        owner_id = creator.member_id if creator else None
    return upload if owner_id == member.pk else None


def node_dataset_get(*, dataset_id: uuid.UUID) -> Dataset | None:
    """A dataset as a node asks for it; the grant check is the service's (it logs refusals)."""
    return Dataset.objects.select_related("owner").filter(pk=dataset_id, status__in=VISIBLE).first()
