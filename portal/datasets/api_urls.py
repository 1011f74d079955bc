from __future__ import annotations

from django.urls import path

from portal.core.signed_apis import signed_routes
from portal.datasets import apis, node_apis, upload_apis

_ds = "datasets/<uuid:dataset_id>/"
_up = "datasets/uploads/<uuid:upload_id>/"

urlpatterns = [
    path("datasets/", apis.DatasetListApi.as_view(), name="api-dataset-list"),
    *signed_routes(
        "datasets/uploads/",
        upload_apis.UploadTypedDataApi,
        upload_apis.UploadCreateApi,
        name="api-dataset-upload-create",
        typed_name="api-dataset-upload-typed-data",
    ),
    path(_up, upload_apis.UploadDetailApi.as_view(), name="api-dataset-upload"),
    path(
        _up + "chunks/<int:index>/",
        upload_apis.UploadChunkApi.as_view(),
        name="api-dataset-upload-chunk",
    ),
    path(_up + "commit/", upload_apis.UploadCommitApi.as_view(), name="api-dataset-upload-commit"),
    path(_up + "abort/", upload_apis.UploadAbortApi.as_view(), name="api-dataset-upload-abort"),
    path(_ds, apis.DatasetDetailApi.as_view(), name="api-dataset-detail"),
    path(_ds + "versions/", apis.VersionListApi.as_view(), name="api-dataset-versions"),
    path(_ds + "grants/", apis.GrantListApi.as_view(), name="api-dataset-grants"),
    *signed_routes(
        _ds + "grants/add/",
        apis.GrantAddition,
        name="api-dataset-grant-add",
        typed_name="api-dataset-grant-typed-data",
    ),
    *signed_routes(
        _ds + "grants/<str:node_id>/revoke/", apis.GrantRevocation, name="api-dataset-grant-revoke"
    ),
    path(_ds + "access-log/", apis.AccessLogApi.as_view(), name="api-dataset-access-log"),
    *signed_routes(_ds + "withdraw/", apis.Withdrawal, name="api-dataset-withdraw"),
    path(
        _ds + "node/manifest/",
        node_apis.NodeManifestApi.as_view(),
        name="api-dataset-node-manifest",
    ),
    path(
        _ds + "node/chunks/<int:index>/",
        node_apis.NodeChunkApi.as_view(),
        name="api-dataset-node-chunk",
    ),
    path(_ds + "node/reports/", node_apis.NodeReportApi.as_view(), name="api-dataset-node-report"),
]
