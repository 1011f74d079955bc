from __future__ import annotations

from django.urls import path

from portal.consortium import apis

urlpatterns = [
    path("auth/token/", apis.TokenObtainApi.as_view(), name="api-token"),
    path("auth/tokens/", apis.TokenListApi.as_view(), name="api-token-list"),
    path("auth/tokens/<int:token_id>/", apis.TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("me/", apis.MeApi.as_view(), name="api-me"),
    path("members/", apis.MemberListApi.as_view(), name="api-member-list"),
    path("members/<int:member_id>/", apis.MemberDetailApi.as_view(), name="api-member-detail"),
    path(
        "members/<int:member_id>/removal/typed-data/",
        apis.RemovalTypedDataApi.as_view(),
        name="api-removal-typed-data",
    ),
    path(
        "members/<int:member_id>/removal/",
        apis.RemovalProposeApi.as_view(),
        name="api-removal",
    ),
    path(
        "members/<int:member_id>/rotation/typed-data/",
        apis.RotationTypedDataApi.as_view(),
        name="api-rotation-typed-data",
    ),
    path(
        "members/<int:member_id>/rotation/",
        apis.RotationProposeApi.as_view(),
        name="api-rotation",
    ),
    path("applications/", apis.ApplicationSubmitApi.as_view(), name="api-application-submit"),
    path(
        "applications/typed-data/",
        apis.ApplicationTypedDataApi.as_view(),
        name="api-application-typed-data",
    ),
    path(
        "applications/awaiting-sponsor/",
        apis.ApplicationListApi.as_view(),
        name="api-application-list",
    ),
    path(
        "applications/<int:member_id>/sponsor/typed-data/",
        apis.SponsorTypedDataApi.as_view(),
        name="api-sponsor-typed-data",
    ),
    path(
        "applications/<int:member_id>/sponsor/",
        apis.SponsorApi.as_view(),
        name="api-sponsor",
    ),
    path("proposals/", apis.ProposalListApi.as_view(), name="api-proposal-list"),
    path(
        "proposals/<int:proposal_id>/",
        apis.ProposalDetailApi.as_view(),
        name="api-proposal-detail",
    ),
    path(
        "proposals/<int:proposal_id>/vote/typed-data/",
        apis.VoteTypedDataApi.as_view(),
        name="api-vote-typed-data",
    ),
    path("proposals/<int:proposal_id>/vote/", apis.VoteCastApi.as_view(), name="api-vote"),
    path(
        "proposals/<int:proposal_id>/finalize/",
        apis.ProposalFinalizeApi.as_view(),
        name="api-proposal-finalize",
    ),
    path("staff/", apis.StaffListApi.as_view(), name="api-staff-list"),
    path("staff/<int:staff_id>/", apis.StaffRemoveApi.as_view(), name="api-staff-remove"),
    path("invitations/", apis.InvitationCreateApi.as_view(), name="api-invitation-create"),
    path("invitations/sent/", apis.InvitationListApi.as_view(), name="api-invitation-list"),
    path(
        "invitations/accept/",
        apis.InvitationAcceptApi.as_view(),
        name="api-invitation-accept",
    ),
]
