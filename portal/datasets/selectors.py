"""Who sees which dataset rows. Permission rules live here, once.

Every staff member of an active member sees the catalogue (owner, counts,
modality, version, anchor) but no content; only the owner's staff see its
versions' manifests, grants, uploads and access log.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from portal.consortium.models import Member, Staff
from portal.consortium.selectors import staff_of
from portal.datasets.models import AccessLog, Dataset, DatasetVersion, Grant, Upload

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
    return Dataset.objects.select_related("owner").filter(status__in=VISIBLE)


def dataset_get(*, viewer: User, dataset_id: uuid.UUID) -> Dataset | None:
    return dataset_list(viewer=viewer).filter(pk=dataset_id).first()


def owned_dataset_list(*, viewer: User) -> QuerySet[Dataset]:
    member = uploader_member(viewer)
    if member is None:
        return Dataset.objects.none()
    return dataset_list(viewer=viewer).filter(owner=member)


def version_list(*, viewer: User, dataset: Dataset) -> QuerySet[DatasetVersion]:
    if not owned_dataset_list(viewer=viewer).filter(pk=dataset.pk).exists():
        return DatasetVersion.objects.none()
    return dataset.versions.exclude(state=DatasetVersion.State.UPLOADING).order_by("-number")


def grant_list(*, viewer: User, dataset: Dataset) -> QuerySet[Grant]:
    if not owned_dataset_list(viewer=viewer).filter(pk=dataset.pk).exists():
        return Grant.objects.none()
    return (
        Grant.objects.select_related("node", "node__member", "version")
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


def access_log_list(*, viewer: User, dataset: Dataset) -> QuerySet[AccessLog]:
    if not owned_dataset_list(viewer=viewer).filter(pk=dataset.pk).exists():
        return AccessLog.objects.none()
    return AccessLog.objects.select_related("node", "user", "version").filter(dataset=dataset)


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
