"""REST API for the people acting for a member: staff, invitations, API tokens, and who
the caller is. Who may manage staff is ``selectors.may_act``'s answer, as on the pages."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django_otp import match_token, user_has_device
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from portal.consortium import selectors, services
from portal.consortium.apis import MemberOutputSerializer, MemberRefSerializer
from portal.consortium.models import Invitation, Staff
from portal.consortium.selectors import Action, acting_staff
from portal.core.apis import ListApi, MemberApi, PublicApi
from portal.core.exceptions import ServiceError
from portal.core.models import ApiToken
from portal.core.ratelimit import client_address
from portal.core.schema import error_responses
from portal.core.serializers import OutputSerializer, new_password, username_field
from portal.core.signin import signin_check, signin_failed, signin_succeeded
from portal.core.tokens import api_token_issue, api_token_list, api_token_revoke


class StaffOutputSerializer(OutputSerializer):
    id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    email = serializers.EmailField(source="user.email")
    role = serializers.ChoiceField(choices=Staff.Role.choices)
    member = MemberRefSerializer()
    created_at = serializers.DateTimeField()


@extend_schema(tags=["staff"])
class StaffListApi(ListApi):
    """The people acting for the viewer's member, in the order they joined."""

    serializer_class = StaffOutputSerializer

    def get_queryset(self) -> QuerySet[Staff]:
        staff = selectors.staff_list(viewer=self.request.user).select_related("member")
        return staff.order_by("created_at", "pk")


class StaffRemoveApi(MemberApi):
    """Remove a person from the member's staff; their login stops working."""

    @extend_schema(
        tags=["staff"], request=None, responses={204: None, **error_responses(400, 403, 404)}
    )
    def delete(self, request: Request, staff_id: int) -> Response:
        staff = get_object_or_404(selectors.staff_list(viewer=request.user), pk=staff_id)
        admin = acting_staff(viewer=request.user, action=Action.REMOVE_STAFF)
        services.staff_remove(admin=admin, staff=staff)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationOutputSerializer(OutputSerializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Staff.Role.choices)
    member = MemberRefSerializer()
    token = serializers.CharField(help_text="give it to the invitee: it accepts the invitation")
    expires_at = serializers.DateTimeField()
    accepted_at = serializers.DateTimeField(allow_null=True)


class InvitationCreateApi(MemberApi):
    """Invite a person to the member's staff."""

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField(max_length=254)
        role = serializers.ChoiceField(choices=Staff.Role.choices)

        class Meta:
            ref_name = "InvitationCreateInput"

    @extend_schema(
        tags=["staff"],
        request=InputSerializer,
        responses={201: InvitationOutputSerializer, **error_responses(400, 403)},
    )
    def post(self, request: Request) -> Response:
        admin = acting_staff(viewer=request.user, action=Action.INVITE_STAFF)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation = services.staff_invite(admin=admin, **data.validated_data)
        return Response(InvitationOutputSerializer(invitation).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["staff"])
class InvitationListApi(ListApi):
    """The admin's invitations, open and accepted, newest first."""

    serializer_class = InvitationOutputSerializer

    def get_queryset(self) -> QuerySet[Invitation]:
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        acting_staff(viewer=self.request.user, action=Action.SEE_INVITATIONS)
        invitations = selectors.invitation_list(viewer=self.request.user)
        return invitations.select_related("member").order_by("-created_at", "-pk")


class InvitationAcceptApi(PublicApi):
    """Accept an invitation with its token: creates the invitee's login."""

    class InputSerializer(serializers.Serializer):
        token = serializers.CharField(max_length=64)
        username = username_field()
        password = serializers.CharField(
            write_only=True, max_length=4096, style={"input_type": "password"}
        )

        class Meta:
            ref_name = "InvitationAcceptInput"

        def validate_password(self, value: str) -> str:
            return new_password(value)

    @extend_schema(
        tags=["staff"],
        request=InputSerializer,
        responses={201: StaffOutputSerializer, **error_responses(400)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        staff = services.invitation_accept(**data.validated_data)
        return Response(StaffOutputSerializer(staff).data, status=status.HTTP_201_CREATED)


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField(help_text="empty for a node's login")


class TokenObtainApi(PublicApi):
    """A new API token for a user, shown once; admins also give a current TOTP code.

    Each call issues another token (list and revoke them at /api/v1/auth/tokens/). Wrong
    passwords and codes count towards the sign-in lockout, per account and per address.
    """

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(
            write_only=True, max_length=4096, style={"input_type": "password"}
        )
        otp_token = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=16,
            help_text="the 6-digit code from the authenticator app (required for admins)",
        )

        class Meta:
            ref_name = "TokenObtainInput"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        token = serializers.CharField(
            help_text="send as `Authorization: Token <token>`; shown only this once"
        )
        expires = serializers.DateTimeField()
        user = UserSerializer()

        class Meta:
            ref_name = "TokenObtainOutput"

    @extend_schema(
        tags=["auth"],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(400, 429)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username = data.validated_data["username"]
        address = client_address(request._request)
        signin_check(username=username, address=address)
        user = authenticate(
            request._request, username=username, password=data.validated_data["password"]
        )
        if user is None:
            raise ServiceError("the username or password is wrong", code="bad_credentials")
        if selectors.needs_second_factor(user):
            _check_second_factor(
                user, data.validated_data.get("otp_token", "").strip(), address=address
            )
        signin_succeeded(username=username)
        token, key = api_token_issue(user=user)
        return Response(
            self.OutputSerializer(
                {"id": token.pk, "token": key, "expires": token.expires, "user": user}
            ).data
        )


def _check_second_factor(user: AbstractBaseUser, otp: str, *, address: str) -> None:
    if not user_has_device(user):
        raise ServiceError(
            "admins need two-factor login: set up an authenticator app in the portal "
            "first, then ask for a token with its code",
            code="otp_not_set_up",
        )
    if not otp:
        raise ServiceError(
            "admins must give the current code from their authenticator app as otp_token",
            code="otp_required",
        )
    if match_token(user, otp) is None:
        signin_failed(username=user.get_username(), address=address)
        raise ServiceError(
            "the two-factor code is wrong or already used: wait for the next one",
            code="otp_invalid",
        )


class TokenOutputSerializer(OutputSerializer):
    id = serializers.IntegerField()
    prefix = serializers.CharField(help_text="the key's first characters, to tell it apart")
    kind = serializers.ChoiceField(choices=ApiToken.Kind.choices)
    created = serializers.DateTimeField()
    expires = serializers.DateTimeField()
    last_used = serializers.DateTimeField(allow_null=True, help_text="to within five minutes")
    current = serializers.SerializerMethodField(help_text="the token this request was sent with")

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_current(self, token: ApiToken) -> bool:
        return bool(token.pk == self.context.get("current"))


@extend_schema(tags=["auth"])
class TokenListApi(ListApi):
    """The caller's own API tokens (never their keys), newest first."""

    serializer_class = TokenOutputSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        return api_token_list(viewer=self.request.user).order_by("-created", "-pk")

    def get_serializer_context(self) -> dict[str, Any]:
        auth = self.request.auth
        current = auth.pk if isinstance(auth, ApiToken) else None
        return {**super().get_serializer_context(), "current": current}


class TokenRevokeApi(MemberApi):
    """Revoke one of the caller's API tokens; it stops working at once."""

    @extend_schema(tags=["auth"], responses={204: None, **error_responses(404)})
    def delete(self, request: Request, token_id: int) -> Response:
        api_token_revoke(token=get_object_or_404(api_token_list(viewer=request.user), pk=token_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(MemberApi):
    """Who the caller is: user, member, role inside it and the member's status."""

    class OutputSerializer(serializers.Serializer):
        user = UserSerializer()
        member = MemberOutputSerializer(allow_null=True)
        role = serializers.ChoiceField(choices=Staff.Role.choices, allow_null=True)
        status = serializers.CharField(
            allow_null=True, help_text="the member's: applied, proposed, active, refused, removed"
        )

        class Meta:
            ref_name = "MeOutput"

    @extend_schema(tags=["auth"], responses={200: OutputSerializer})
    def get(self, request: Request) -> Response:
        staff = selectors.staff_of(request.user)
        member = staff.member if staff else None
        return Response(
            self.OutputSerializer(
                {
                    "user": request.user,
                    "member": member,
                    "role": staff.role if staff else None,
                    "status": member.status if member else None,
                }
            ).data
        )
