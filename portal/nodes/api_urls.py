from __future__ import annotations

from django.urls import path

from portal.core.signed_apis import signed_routes
from portal.nodes import apis

urlpatterns = [
    path("nodes/", apis.NodeListApi.as_view(), name="api-node-list"),
    *signed_routes("nodes/register/", apis.Registration, name="api-node-register"),
    path(
        "nodes/check-in/challenge/",
        apis.CheckInChallengeApi.as_view(),
        name="api-node-check-in-challenge",
    ),
    path("nodes/check-in/", apis.CheckInApi.as_view(), name="api-node-check-in"),
    path("nodes/<str:node_id>/token/", apis.NodeTokenIssueApi.as_view(), name="api-node-token"),
]
