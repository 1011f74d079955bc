"""Browser pages for membership. Sign-in pages live under /accounts/ and applying
under /apply, the prefixes the two-factor middleware lets through."""

from __future__ import annotations

from django.contrib.auth.views import LogoutView
from django.urls import path

from portal.consortium import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("accounts/login/", views.PortalLoginView.as_view(), name="login"),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("accounts/two-factor/", views.two_factor, name="two_factor"),
    path("accounts/invitations/<str:token>/", views.invitation_accept, name="invitation_accept"),
    path("apply/", views.apply, name="apply"),
    path("apply/typed-data", views.apply_typed_data, name="apply_typed_data"),
    path("members/", views.members, name="members"),
    path("members/<int:pk>/sponsor/", views.sponsor, name="sponsor"),
    path(
        "members/<int:pk>/sponsor/typed-data", views.sponsor_typed_data, name="sponsor_typed_data"
    ),
    path("members/<int:pk>/removal/", views.removal, name="removal"),
    path(
        "members/<int:pk>/removal/typed-data", views.removal_typed_data, name="removal_typed_data"
    ),
    path("members/<int:pk>/rotation/", views.rotation, name="rotation"),
    path(
        "members/<int:pk>/rotation/typed-data",
        views.rotation_typed_data,
        name="rotation_typed_data",
    ),
    path("proposals/", views.proposals, name="proposals"),
    path("proposals/<int:number>/", views.proposal, name="proposal"),
    path("proposals/<int:number>/typed-data", views.vote_typed_data, name="vote_typed_data"),
    path("staff/", views.staff, name="staff"),
    path("tokens/", views.api_tokens, name="api_tokens"),
]
