from __future__ import annotations

from django.urls import path

from portal.nodes import apis

urlpatterns = [
    path("nodes/", apis.NodeListApi.as_view(), name="api-node-list"),
    path("nodes/register/", apis.NodeRegisterApi.as_view(), name="api-node-register"),
    path(
        "nodes/register/typed-data/",
        apis.NodeRegistrationTypedDataApi.as_view(),
        name="api-node-register-typed-data",
    ),
    path(
        "nodes/check-in/challenge/",
        apis.CheckInChallengeApi.as_view(),
        name="api-node-check-in-challenge",
    ),
    path("nodes/check-in/", apis.CheckInApi.as_view(), name="api-node-check-in"),
    path("nodes/<str:node_id>/token/", apis.NodeTokenIssueApi.as_view(), name="api-node-token"),
]
