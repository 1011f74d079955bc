"""Datasets for governors: what each member holds, its versions, grants and access log."""

from __future__ import annotations

from django.contrib import admin

from portal.core.admin import ReadOnlyAdminMixin
from portal.datasets.models import AccessLog, Dataset, DatasetVersion, Grant, Upload


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Mirror and log rows: the chain and the services write them, not the admin (deleting one
    would make the mirror disagree with the chain, or erase an access record)."""


@admin.register(Dataset)
class DatasetAdmin(ReadOnlyAdmin):
    list_display = ["title", "owner", "modality", "instances", "status", "created_at"]
    list_filter = ["status", "modality"]
    search_fields = ["title", "owner__name"]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    list_display = ["dataset", "number", "state", "manifest_sha256", "anchored_block"]
    list_filter = ["state"]


@admin.register(Upload)
class UploadAdmin(ReadOnlyAdmin):
    list_display = ["id", "dataset_uuid", "version_number", "state", "expires_at", "updated_at"]
    list_filter = ["state"]


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = ["version", "node", "state", "cross_member", "recorded_block"]
    list_filter = ["state", "cross_member"]


@admin.register(AccessLog)
class AccessLogAdmin(ReadOnlyAdmin):
    list_display = ["at", "dataset", "action", "what", "node", "user", "chunk"]
    list_filter = ["action", "what"]
