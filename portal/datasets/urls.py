from __future__ import annotations

from django.urls import path

from portal.datasets import home, views

urlpatterns = [
    # The first page: what MedChain is, or the signed-in person's dashboard. It lives in the
    # top app because the dashboard shows datasets and nodes, which consortium may not import.
    path("", home.home, name="dashboard"),
    path("datasets/", views.dataset_list_page, name="dataset-list"),
    path("datasets/upload/", views.dataset_upload_page, name="dataset-upload"),
    path("datasets/upload/demo-uid-secret/", views.demo_uid_secret, name="dataset-demo-uid-secret"),
    path("datasets/<uuid:dataset_id>/", views.dataset_detail_page, name="dataset-detail"),
    path(
        "datasets/<uuid:dataset_id>/withdraw/typed-data/",
        views.Withdrawal.typed_data_view(),
        name="dataset-withdraw-typed-data",
    ),
    path(
        "datasets/<uuid:dataset_id>/revoke/typed-data/",
        views.GrantRevocation.typed_data_view(),
        name="dataset-revoke-typed-data",
    ),
]
