from __future__ import annotations

from django.urls import path

from portal.datasets import apis

_ds = "datasets/<uuid:dataset_id>/"
_up = "datasets/uploads/<uuid:upload_id>/"

urlpatterns = [
    path("datasets/", apis.DatasetListApi.as_view(), name="api-dataset-list"),
    path(
        "datasets/uploads/typed-data/",
        apis.UploadTypedDataApi.as_view(),
        name="api-dataset-upload-typed-data",
    ),
    path("datasets/uploads/", apis.UploadCreateApi.as_view(), name="api-dataset-upload-create"),
    path(_up, apis.UploadDetailApi.as_view(), name="api-dataset-upload"),
    path(
        _up + "chunks/<int:index>/",
        apis.UploadChunkApi.as_view(),
        name="api-dataset-upload-chunk",
    ),
    path(_up + "commit/", apis.UploadCommitApi.as_view(), name="api-dataset-upload-commit"),
    path(_up + "abort/", apis.UploadAbortApi.as_view(), name="api-dataset-upload-abort"),
    path(_ds, apis.DatasetDetailApi.as_view(), name="api-dataset-detail"),
    path(_ds + "versions/", apis.VersionListApi.as_view(), name="api-dataset-versions"),
    path(_ds + "grants/", apis.GrantListApi.as_view(), name="api-dataset-grants"),
    path(
        _ds + "grants/add/typed-data/",
        apis.GrantTypedDataApi.as_view(),
        name="api-dataset-grant-typed-data",
    ),
    path(_ds + "grants/add/", apis.GrantAddApi.as_view(), name="api-dataset-grant-add"),
    path(
        _ds + "grants/<str:node_id>/revoke/typed-data/",
        apis.GrantRevokeTypedDataApi.as_view(),
        name="api-dataset-grant-revoke-typed-data",
    ),
    path(
        _ds + "grants/<str:node_id>/revoke/",
        apis.GrantRevokeApi.as_view(),
        name="api-dataset-grant-revoke",
    ),
    path(_ds + "access-log/", apis.AccessLogApi.as_view(), name="api-dataset-access-log"),
    path(
        _ds + "withdraw/typed-data/",
        apis.WithdrawTypedDataApi.as_view(),
        name="api-dataset-withdraw-typed-data",
    ),
    path(_ds + "withdraw/", apis.WithdrawApi.as_view(), name="api-dataset-withdraw"),
    path(_ds + "node/manifest/", apis.NodeManifestApi.as_view(), name="api-dataset-node-manifest"),
    path(
        _ds + "node/chunks/<int:index>/",
        apis.NodeChunkApi.as_view(),
        name="api-dataset-node-chunk",
    ),
    path(_ds + "node/reports/", apis.NodeReportApi.as_view(), name="api-dataset-node-report"),
]
