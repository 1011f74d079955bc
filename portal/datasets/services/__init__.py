"""Writes for datasets: resumable uploads, anchoring, grants, withdrawal, the access log.

A version becomes visible only once every chunk matches its signed manifest
and the manifest hash is anchored on chain; a failed or abandoned upload
leaves no row that anyone sees and no stored chunk. Chain actions are signed
by the member (manifest and grants to its own nodes: governance key or a Data
delegate; grants to another member's node, revocation and withdrawal: governance
key) and relayed by the portal, which then mirrors the receipt's events at once.

One module per concept: ``uploads`` opens an upload, ``chunks`` carries it to its
end, ``grants`` holds the owner's actions, ``access`` what nodes receive, and
``chain`` what they all relay through. Callers use the names below.
"""

from __future__ import annotations

from portal.datasets.services.access import (
    Refused,
    TooManyReports,
    access_log,
    node_grant,
    node_release_chunk,
    node_release_manifest,
    node_report,
)
from portal.datasets.services.chain import (
    active_node_or_error,
    dataset_registry,
    grant_signer,
)
from portal.datasets.services.chunks import (
    upload_abort,
    upload_chunk_store,
    upload_commit,
    upload_discard,
    uploads_cleanup,
)
from portal.datasets.services.grants import (
    dataset_withdraw,
    grant_add,
    grant_add_signer,
    grant_revoke,
    grant_revoke_typed_data,
    grant_typed_data,
    withdraw_typed_data,
)
from portal.datasets.services.uploads import (
    GrantRequest,
    QuotaExceeded,
    UploadPlan,
    max_chunk_bytes,
    max_dataset_bytes,
    upload_create,
    upload_plan,
    upload_quota_check,
)

__all__ = [
    "GrantRequest",
    "QuotaExceeded",
    "Refused",
    "TooManyReports",
    "UploadPlan",
    "access_log",
    "active_node_or_error",
    "dataset_registry",
    "dataset_withdraw",
    "grant_add",
    "grant_add_signer",
    "grant_revoke",
    "grant_revoke_typed_data",
    "grant_signer",
    "grant_typed_data",
    "max_chunk_bytes",
    "max_dataset_bytes",
    "node_grant",
    "node_release_chunk",
    "node_release_manifest",
    "node_report",
    "upload_abort",
    "upload_chunk_store",
    "upload_commit",
    "upload_create",
    "upload_discard",
    "upload_plan",
    "upload_quota_check",
    "uploads_cleanup",
    "withdraw_typed_data",
]
