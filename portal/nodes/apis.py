"""REST API for hospital nodes: staff manage their member's nodes, a node checks in."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.consortium.models import Member
from portal.consortium.selectors import staff_of
from portal.core import chain as portal_chain
from portal.core.apis import ListApi
from portal.core.schema import error_responses as _errors
from portal.core.serializers import FastRepresentation, hex_field
from portal.core.signed_apis import SignedActionApis
from portal.nodes import services
from portal.nodes.models import Node
from portal.nodes.selectors import admin_member, node_get, node_list, node_of


class IsMemberStaff(BasePermission):
    message = "only staff of an active consortium member can see its nodes"

    def has_permission(self, request: Request, view: APIView) -> bool:
        staff = staff_of(request.user)
        return staff is not None and staff.member.is_active


class IsMemberAdmin(BasePermission):
    message = "only the admin of an active consortium member can manage its nodes"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return admin_member(request.user) is not None


class IsNode(BasePermission):
    message = "this route is for a registered, active hospital node's token"

    def has_permission(self, request: Request, view: APIView) -> bool:
        return node_of(request.user) is not None


class NodeOutputSerializer(FastRepresentation, serializers.ModelSerializer):
    member = serializers.CharField(source="member.name")
    online = serializers.BooleanField(source="is_online")

    class Meta:
        model = Node
        fields = [
            "node_id",
            "label",
            "member",
            "signer_address",
            "data_public_key",
            "active",
            "online",
            "last_check_in",
            "registered_block",
        ]


class NodeListApi(ListApi):
    """The viewer's member's nodes."""

    permission_classes = [IsMemberStaff]
    serializer_class = NodeOutputSerializer

    def get_queryset(self) -> QuerySet[Node]:
        return node_list(viewer=self.request.user)


class _NodeAdminApi(APIView):
    permission_classes = [IsMemberAdmin]


class Registration(_NodeAdminApi, SignedActionApis):
    """A training node of the admin's member, registered on chain by its governance key."""

    action = "RegisterNode"
    Output = NodeOutputSerializer
    status_code = status.HTTP_201_CREATED
    typed_errors = (400, 403, 503)
    relay_errors = (400, 403, 409, 503)
    inputs = ("NodeRegistrationTypedDataInput", "NodeRegisterInput")
    about = ("The EIP-712 RegisterNode message for the member's wallet to sign.", "")

    class Fields(serializers.Serializer):
        node_id = hex_field(64, "a bytes32 node id", help_text="from `manage.py node_init`")
        signer_address = hex_field(40, "an Ethereum address")
        data_public_key = hex_field(64, "an X25519 public key")

    class RelayFields(Fields):
        label = serializers.CharField(max_length=100, required=False, default="")  # type: ignore[assignment]

    def typed(self, actor: Member, subject: None, data: dict[str, Any]) -> Any:
        return services.node_registration_typed_data(member=actor, **data)

    def relay(self, actor: Member, subject: None, data: dict[str, Any]) -> Any:
        return services.node_register(member=actor, **data)


class NodeTokenIssueApi(APIView):
    """A new API token for the node (shown once; the previous one stops working)."""

    permission_classes = [IsMemberAdmin]

    class OutputSerializer(serializers.Serializer):
        node_id = serializers.CharField()
        token = serializers.CharField()

        class Meta:
            ref_name = "NodeTokenOutput"

    @extend_schema(request=None, responses={201: OutputSerializer, **_errors(400, 403, 404)})
    def post(self, request: Request, node_id: str) -> Response:
        node = node_get(viewer=request.user, node_id=node_id)
        if node is None:
            raise NotFound(f"your member has no node {node_id}")
        token = services.node_token_issue(node=node)
        return Response(
            self.OutputSerializer({"node_id": node.node_id, "token": token}).data,
            status=status.HTTP_201_CREATED,
        )


class CheckInChallengeApi(APIView):
    """A one-time challenge for the calling node to sign (EIP-712 NodeCheckIn)."""

    permission_classes = [IsNode]

    class OutputSerializer(serializers.Serializer):
        node_id = serializers.CharField()
        challenge = serializers.CharField()
        expires_at = serializers.DateTimeField()
        chain_id = serializers.IntegerField()
        registry = serializers.CharField()

        class Meta:
            ref_name = "CheckInChallengeOutput"

    @extend_schema(request=None, responses={201: OutputSerializer, **_errors(400, 403, 503)})
    def post(self, request: Request) -> Response:
        node = node_of(request.user)
        assert node is not None  # IsNode
        challenge = services.check_in_challenge_issue(node=node)
        deployment = portal_chain.deployment()
        out = {
            "node_id": node.node_id,
            "challenge": challenge.value,
            "expires_at": challenge.expires_at,
            "chain_id": deployment.chain_id,
            "registry": deployment.address,
        }
        return Response(self.OutputSerializer(out).data, status=status.HTTP_201_CREATED)


class CheckInApi(APIView):
    """The node's signature over its challenge; on success the node is online."""

    permission_classes = [IsNode]

    class InputSerializer(serializers.Serializer):
        challenge = hex_field(64, "the challenge you were given")
        signature = hex_field(130, "a 65-byte EIP-712 signature")

        class Meta:
            ref_name = "CheckInInput"

    class OutputSerializer(serializers.Serializer):
        node_id = serializers.CharField()
        last_check_in = serializers.DateTimeField()
        next_check_in_seconds = serializers.IntegerField()

        class Meta:
            ref_name = "CheckInOutput"

    @extend_schema(
        request=InputSerializer, responses={200: OutputSerializer, **_errors(400, 403, 503)}
    )
    def post(self, request: Request) -> Response:
        node = node_of(request.user)
        assert node is not None  # IsNode
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        node = services.check_in_verify(node=node, **data.validated_data)
        out = {
            "node_id": node.node_id,
            "last_check_in": node.last_check_in,
            "next_check_in_seconds": settings.NODE_CHECK_IN_SECONDS,
        }
        return Response(self.OutputSerializer(out).data)
