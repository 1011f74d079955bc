"""Pages: a member's nodes, online or offline, and issuing a node's token."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.consortium.models import Staff
from portal.consortium.selectors import staff_of
from portal.core.exceptions import ServiceError
from portal.nodes import services
from portal.nodes.selectors import node_get, node_list


@login_required
def node_list_page(request: HttpRequest) -> HttpResponse:
    staff = staff_of(request.user)
    nodes = node_list(viewer=request.user)
    return render(
        request,
        "nodes/node_list.html",
        {
            "section": "nodes",
            "nodes": nodes,
            "is_admin": staff is not None and staff.role == Staff.Role.ADMIN,
            "online_count": sum(1 for n in nodes if n.is_online),
        },
    )


@login_required
@require_POST
def node_token_page(request: HttpRequest, node_id: str) -> HttpResponse:
    staff = staff_of(request.user)
    node = node_get(viewer=request.user, node_id=node_id)
    if node is None:
        raise Http404("no such node of your member")
    if staff is None or staff.role != Staff.Role.ADMIN:
        messages.error(request, "Only your member's admin can issue a node token.")
        return redirect("node-list")
    try:
        token = services.node_token_issue(node=node)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("node-list")
    # Rendered once, never stored in the page's session or shown again.
    return render(request, "nodes/node_token.html", {"node": node, "token": token})
