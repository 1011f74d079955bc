"""Who may call the dataset routes: staff of an active member, its uploaders, its nodes."""

from __future__ import annotations

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from portal.consortium.models import Member
from portal.datasets import selectors
from portal.nodes.models import Node
from portal.nodes.selectors import node_of


class IsMemberStaff(BasePermission):
    message = "only staff of an active consortium member can see the dataset catalogue"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return selectors.viewer_member(request.user) is not None


class IsUploader(BasePermission):
    message = "only the admin or a data steward of an active consortium member can do this"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return selectors.uploader_member(request.user) is not None


class IsNode(BasePermission):
    message = "this route is for a registered, active training node's token"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return node_of(request.user) is not None


def request_node(request: Request) -> Node:
    node = node_of(request.user)
    assert node is not None  # IsNode
    return node


def request_uploader(request: Request) -> Member:
    member = selectors.uploader_member(request.user)
    assert member is not None  # IsUploader
    return member
