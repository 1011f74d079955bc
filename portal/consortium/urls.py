"""Browser pages for membership. Sign-in pages live under /accounts/ and applying
under /apply, the prefixes the two-factor middleware lets through."""

from __future__ import annotations

from django.contrib.auth.views import LogoutView
from django.urls import path

from portal.consortium import account_views, views
from portal.core.signed_views import page_routes

urlpatterns = [
    path("accounts/login/", account_views.PortalLoginView.as_view(), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("accounts/two-factor/", account_views.two_factor, name="two_factor"),
    path(
        "accounts/invitations/<str:token>/",
        account_views.invitation_accept,
        name="invitation_accept",
    ),
    path("apply/", views.apply, name="apply"),
    path("apply/typed-data", views.ApplicationTypedData.typed_data_view(), name="apply_typed_data"),
    path("members/", views.members, name="members"),
    *page_routes("members/<int:pk>/sponsor/", views.SponsorPage, name="sponsor"),
    *page_routes("members/<int:pk>/removal/", views.RemovalPage, name="removal"),
    *page_routes("members/<int:pk>/rotation/", views.RotationPage, name="rotation"),
    path("proposals/", views.proposals, name="proposals"),
    *page_routes(
        "proposals/<int:number>/", views.ProposalPage, name="proposal", typed="vote_typed_data"
    ),
    path("staff/", account_views.staff, name="staff"),
    path("tokens/", account_views.api_tokens, name="api_tokens"),
]
