"""Which nodes a person or a node may see. Permission rules live here, once."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from portal.consortium.models import Member, Staff
from portal.consortium.selectors import staff_of
from portal.core.exceptions import Forbidden
from portal.nodes.models import Node

Viewer = AbstractBaseUser | AnonymousUser


def node_list(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Node]:
    """A member's staff see their own member's nodes; nobody sees another member's."""
    staff = staff_of(viewer)
    if staff is None:
        return Node.objects.none()
    return Node.objects.select_related("member").filter(member=staff.member).order_by("label", "pk")


def node_get(*, viewer: AbstractBaseUser | AnonymousUser, node_id: str) -> Node | None:
    return node_list(viewer=viewer).filter(node_id=node_id.lower()).first()


def node_of(user: AbstractBaseUser | AnonymousUser) -> Node | None:
    """The node whose service user is signed in (by its node token), if active."""
    if not user.is_authenticated:
        return None
    return Node.objects.filter(user_id=user.pk, active=True).first()


def admin_member(viewer: Viewer) -> Member | None:
    """The member whose nodes the viewer manages: its admin's, while it is active."""
    staff = staff_of(viewer)
    if staff is None or not staff.member.is_active or staff.role != Staff.Role.ADMIN:
        return None
    return staff.member


def _node_admin(viewer: Viewer, subject: object) -> Member:
    member = admin_member(viewer)
    if member is None:
        raise Forbidden("only the admin of an active consortium member can manage its nodes")
    return member


def signer_checks() -> dict[str, Callable[[Viewer, object], Member]]:
    """Who acts for the viewer in this app's signed actions (``relay.register_checks``)."""
    return {"RegisterNode": _node_admin}
