from __future__ import annotations

from django.urls import path

from portal.datasets import views

urlpatterns = [
    path("datasets/", views.dataset_list_page, name="dataset-list"),
    path("datasets/upload/", views.dataset_upload_page, name="dataset-upload"),
    path("datasets/<uuid:dataset_id>/", views.dataset_detail_page, name="dataset-detail"),
    path(
        "datasets/<uuid:dataset_id>/withdraw/typed-data/",
        views.withdraw_typed_data,
        name="dataset-withdraw-typed-data",
    ),
    path(
        "datasets/<uuid:dataset_id>/revoke/typed-data/",
        views.revoke_typed_data,
        name="dataset-revoke-typed-data",
    ),
]
