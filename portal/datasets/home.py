"""The first page. Anonymous: what MedChain is and how a hospital joins. Signed in: a
dashboard that follows the person's role, so each sees first what they came to do:

- a data steward: their hospital's datasets, the upload, and the grants to nodes;
- an admin: proposals awaiting their vote, nodes offline, staff and open invitations;
- a clinician: the catalogue, and diagnosis once the consortium's model serves it.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.consortium import selectors as consortium_selectors
from portal.consortium.models import Member, Staff
from portal.consortium.views import dashboard_context
from portal.datasets import selectors
from portal.datasets.models import Grant
from portal.nodes.selectors import node_list

#: The dashboard lists the newest few; the catalogue and the nodes page list all.
SHOWN = 8


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return render(
            request,
            "consortium/home.html",
            {"member_count": Member.objects.filter(status=Member.Status.ACTIVE).count()},
        )
    context = dashboard_context(request)
    staff: Staff | None = context["own_staff"]
    member: Member | None = context["own_member"]
    if staff is None or member is None or not member.is_active:
        return render(request, "consortium/dashboard.html", context)
    role = staff.role
    context["role"] = role
    if role in (Staff.Role.STEWARD, Staff.Role.ADMIN):
        owned = selectors.owned_dataset_list(viewer=request.user).order_by("-created_at")
        context.update(
            datasets=owned[:SHOWN],
            datasets_total=owned.count(),
            grants=Grant.objects.select_related("node", "version__dataset")
            .filter(version__dataset__in=owned, state=Grant.State.ACTIVE)
            .order_by("-created_at")[:SHOWN],
        )
    if role == Staff.Role.ADMIN:
        nodes = list(node_list(viewer=request.user).filter(active=True).order_by("label"))
        context.update(
            nodes_total=len(nodes),
            nodes_offline=[n for n in nodes if not n.is_online],
            staff_total=consortium_selectors.staff_list(viewer=request.user).count(),
            invitations_open=[
                i for i in consortium_selectors.invitation_list(viewer=request.user) if i.is_open
            ],
        )
    if role == Staff.Role.CLINICIAN:
        context["catalogue_total"] = selectors.dataset_list(viewer=request.user).count()
    return render(request, "consortium/dashboard.html", context)
