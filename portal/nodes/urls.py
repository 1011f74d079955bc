from __future__ import annotations

from django.urls import path

from portal.nodes import views

urlpatterns = [
    path("nodes/", views.node_list_page, name="node-list"),
    path("nodes/<str:node_id>/token/", views.node_token_page, name="node-token"),
]
