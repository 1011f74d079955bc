"""Which nodes a person or a node may see. Permission rules live here, once."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from portal.consortium.selectors import staff_of
from portal.nodes.models import Node


def node_list(*, viewer: AbstractBaseUser | AnonymousUser) -> QuerySet[Node]:
    """A member's staff see their own member's nodes; nobody sees another member's."""
    staff = staff_of(viewer)
    if staff is None:
        return Node.objects.none()
    return Node.objects.select_related("member").filter(member=staff.member)


def node_get(*, viewer: AbstractBaseUser | AnonymousUser, node_id: str) -> Node | None:
    return node_list(viewer=viewer).filter(node_id=node_id.lower()).first()


def node_of(user: AbstractBaseUser | AnonymousUser) -> Node | None:
    """The node whose service user is signed in (by its node token), if active."""
    if not user.is_authenticated:
        return None
    return Node.objects.filter(user_id=user.pk, active=True).first()
