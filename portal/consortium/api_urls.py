from __future__ import annotations

from django.urls import path

from portal.consortium import account_apis, apis
from portal.core.signed_apis import signed_routes

_member = "members/<int:member_id>/"
_proposal = "proposals/<int:proposal_id>/"

urlpatterns = [
    path("auth/token/", account_apis.TokenObtainApi.as_view(), name="api-token"),
    path("auth/tokens/", account_apis.TokenListApi.as_view(), name="api-token-list"),
    path(
        "auth/tokens/<int:token_id>/",
        account_apis.TokenRevokeApi.as_view(),
        name="api-token-revoke",
    ),
    path("me/", account_apis.MeApi.as_view(), name="api-me"),
    path("members/", apis.MemberListApi.as_view(), name="api-member-list"),
    path(_member, apis.MemberDetailApi.as_view(), name="api-member-detail"),
    *signed_routes(_member + "removal/", apis.Removal, name="api-removal"),
    *signed_routes(_member + "rotation/", apis.Rotation, name="api-rotation"),
    *signed_routes(
        "applications/",
        apis.ApplicationTypedDataApi,
        apis.ApplicationSubmitApi,
        name="api-application-submit",
        typed_name="api-application-typed-data",
    ),
    path(
        "applications/awaiting-sponsor/",
        apis.ApplicationListApi.as_view(),
        name="api-application-list",
    ),
    *signed_routes("applications/<int:member_id>/sponsor/", apis.Sponsor, name="api-sponsor"),
    path("proposals/", apis.ProposalListApi.as_view(), name="api-proposal-list"),
    path(_proposal, apis.ProposalDetailApi.as_view(), name="api-proposal-detail"),
    *signed_routes(_proposal + "vote/", apis.Vote, name="api-vote"),
    path(_proposal + "finalize/", apis.ProposalFinalizeApi.as_view(), name="api-proposal-finalize"),
    path("staff/", account_apis.StaffListApi.as_view(), name="api-staff-list"),
    path("staff/<int:staff_id>/", account_apis.StaffRemoveApi.as_view(), name="api-staff-remove"),
    path("invitations/", account_apis.InvitationCreateApi.as_view(), name="api-invitation-create"),
    path("invitations/sent/", account_apis.InvitationListApi.as_view(), name="api-invitation-list"),
    path(
        "invitations/accept/",
        account_apis.InvitationAcceptApi.as_view(),
        name="api-invitation-accept",
    ),
]
