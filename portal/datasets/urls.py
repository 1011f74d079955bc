from __future__ import annotations

from django.urls import path

from portal.datasets import views

urlpatterns = [
    path("datasets/upload/", views.dataset_upload_page, name="dataset-upload"),
]
