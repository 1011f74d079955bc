"""REST API for membership: applications, sponsoring, removal and rotation, votes, staff,
tokens.

Who sees what is decided by the selectors: an object outside the viewer's
queryset is a 404; an action the viewer's role may not take is a 403.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django_otp import match_token, user_has_device
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from portal.consortium import selectors, services
from portal.consortium.models import Member, Proposal, Staff
from portal.core.apis import ServiceError
from portal.core.models import ApiToken
from portal.core.ratelimit import client_address
from portal.core.schema import errors as _errors
from portal.core.serializers import SignedInputSerializer, hex_field, signature_field
from portal.core.signin import signin_check, signin_failed, signin_succeeded
from portal.core.tokens import api_token_issue, api_token_list, api_token_revoke


class TypedDataSerializer(serializers.Serializer):
    """EIP-712 typed data, ready for a wallet's `eth_signTypedData_v4`."""

    types = serializers.DictField(child=serializers.ListField(child=serializers.DictField()))
    primaryType = serializers.CharField()
    domain = serializers.DictField()
    message = serializers.DictField()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _typed_response(typed: dict[str, Any]) -> Response:
    return Response(TypedDataSerializer(_jsonable(typed)).data)


class SecondFactorVerified(BasePermission):
    """A browser session of an admin counts only once its TOTP code was verified.

    Tokens are issued only against a TOTP code, so token requests pass.
    """

    message = (
        "verify your two-factor code in the portal first (admins must), "
        "or use an API token from /api/v1/auth/token/"
    )

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not isinstance(request.successful_authenticator, SessionAuthentication):
            return True
        user = request.user
        if not _needs_second_factor(user):
            return True
        return bool(getattr(user, "is_verified", lambda: False)())


def _needs_second_factor(user: AbstractBaseUser | AnonymousUser) -> bool:
    if getattr(user, "is_staff", False):
        return True
    staff = selectors.staff_of(user)
    return staff is not None and staff.role == Staff.Role.ADMIN


class MemberApi(APIView):
    """Base for routes that need a signed-in person."""

    permission_classes = [IsAuthenticated, SecondFactorVerified]


class PublicApi(APIView):
    """Base for routes anyone may call: no session, so no CSRF token needed."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes = [AnonRateThrottle]


def _governing_staff(request: Request, action: str) -> Staff:
    """The viewer's staff row, if they are the admin of an active hospital member."""
    staff = selectors.staff_of(request.user)
    if staff is None:
        raise PermissionDenied(f"only the admin of an active hospital member may {action}")
    if staff.role != Staff.Role.ADMIN:
        raise PermissionDenied(
            f"only the admin of {staff.member.name} may {action}; "
            f"you are its {staff.get_role_display().lower()}"
        )
    if not staff.member.can_vote:
        raise PermissionDenied(
            f"only active hospital members may {action}; {staff.member.name} is "
            f"{staff.member.get_status_display().lower()}"
        )
    return staff


def _admin_staff(request: Request, action: str) -> Staff:
    staff = selectors.staff_of(request.user)
    if staff is None or staff.role != Staff.Role.ADMIN:
        raise PermissionDenied(f"only the member's admin may {action}")
    return staff


class MemberRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    governance_address = serializers.CharField()


class MemberOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    contact_email = serializers.EmailField()
    role = serializers.IntegerField(help_text="1 hospital, 2 diagnostic server (the contract's)")
    role_display = serializers.CharField(source="get_role_display")
    status = serializers.CharField(help_text="applied, proposed, active, refused or removed")
    status_display = serializers.CharField(source="get_status_display")
    governance_address = serializers.CharField()
    data_public_key = serializers.CharField()
    name_hash = serializers.CharField()
    chain_member_id = serializers.IntegerField(allow_null=True)
    founding = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class MemberListApi(MemberApi):
    """Active members see every member and applicant; anyone else only their own."""

    @extend_schema(tags=["members"], responses={200: MemberOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        members = selectors.member_list(viewer=request.user)
        return Response(MemberOutputSerializer(members, many=True).data)


class MemberDetailApi(MemberApi):
    @extend_schema(tags=["members"], responses={200: MemberOutputSerializer, **_errors(404)})
    def get(self, request: Request, member_id: int) -> Response:
        member = get_object_or_404(selectors.member_list(viewer=request.user), pk=member_id)
        return Response(MemberOutputSerializer(member).data)


def _username_field() -> serializers.RegexField:
    return serializers.RegexField(
        r"^[\w.@+-]+$",
        max_length=150,
        error_messages={"invalid": "may contain only letters, digits and @ . + - _"},
    )


class ApplicationFieldsSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="the institution's name")
    governance_address = hex_field(
        40,
        "an Ethereum address",
        help_text="the chain address whose key signs for the institution (0x + 40 hex)",
    )
    data_public_key = hex_field(
        64, "an X25519 public key", help_text="X25519 public key, 0x + 64 hex"
    )
    role = serializers.IntegerField(
        default=1, min_value=1, max_value=2, help_text="1 hospital, 2 diagnostic server"
    )


class ApplicationTypedDataApi(PublicApi):
    """The EIP-712 application for the applicant's wallet to sign."""

    class InputSerializer(ApplicationFieldsSerializer):
        class Meta:
            ref_name = "ApplicationTypedDataInput"

    @extend_schema(
        tags=["applications"],
        request=InputSerializer,
        responses={200: TypedDataSerializer, **_errors(400, 503)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        typed = services.application_typed_data(**data.validated_data)
        return _typed_response(typed)


class ApplicationSubmitApi(PublicApi):
    """Apply to join, with the signed application; creates the applicant's admin login."""

    class InputSerializer(ApplicationFieldsSerializer):
        contact_email = serializers.EmailField(max_length=254)
        signature = signature_field("the applicant's governance address", required=True)
        admin_username = _username_field()
        admin_password = serializers.CharField(
            write_only=True, max_length=4096, style={"input_type": "password"}
        )

        class Meta:
            ref_name = "ApplicationSubmitInput"

        def validate_admin_password(self, value: str) -> str:
            try:
                password_validation.validate_password(value)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(list(exc.messages)) from exc
            return value

    @extend_schema(
        tags=["applications"],
        request=InputSerializer,
        responses={201: MemberOutputSerializer, **_errors(400, 503)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.application_submit(**data.validated_data)
        return Response(MemberOutputSerializer(member).data, status=status.HTTP_201_CREATED)


class ApplicationListApi(MemberApi):
    """Applications that wait for a hospital member to sponsor them."""

    @extend_schema(tags=["applications"], responses={200: MemberOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        members = selectors.applications_awaiting_sponsor(viewer=request.user)
        return Response(MemberOutputSerializer(members, many=True).data)


def _application(request: Request, member_id: int) -> Member:
    return get_object_or_404(selectors.member_list(viewer=request.user), pk=member_id)


class SponsorTypedDataApi(MemberApi):
    """The EIP-712 sponsorship for the sponsoring member's wallet to sign."""

    @extend_schema(
        tags=["applications"],
        request=None,
        responses={200: TypedDataSerializer, **_errors(400, 403, 404, 503)},
    )
    def post(self, request: Request, member_id: int) -> Response:
        applicant = _application(request, member_id)
        sponsor = _governing_staff(request, "sponsor an application").member
        typed = services.sponsor_typed_data(sponsor=sponsor, applicant=applicant)
        return _typed_response(typed)


class VoteSerializer(serializers.Serializer):
    voter = MemberRefSerializer()
    support = serializers.BooleanField()
    tx_hash = serializers.CharField()
    block_number = serializers.IntegerField()


_KIND_NAMES = {k: k.name.lower() for k in Proposal.Kind}
_STATUS_NAMES = {s: s.name.lower() for s in Proposal.Status}


class ProposalOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="chain_proposal_id", help_text="its id on chain")
    kind = serializers.SerializerMethodField(help_text="admission, removal or rotation")
    status = serializers.SerializerMethodField(help_text="open, accepted or rejected")
    is_open = serializers.BooleanField(help_text="open and before its deadline: votes count")
    subject = MemberRefSerializer()
    sponsor = MemberRefSerializer(allow_null=True)
    new_governance_address = serializers.CharField()
    eligible = serializers.IntegerField(help_text="hospital members counted when it opened")
    yes = serializers.IntegerField()
    no = serializers.IntegerField()
    deadline = serializers.DateTimeField()
    opened_block = serializers.IntegerField()
    decided_block = serializers.IntegerField(allow_null=True)
    votes = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_kind(self, proposal: Proposal) -> str:
        return _KIND_NAMES[Proposal.Kind(proposal.kind)]

    @extend_schema_field(OpenApiTypes.STR)
    def get_status(self, proposal: Proposal) -> str:
        return _STATUS_NAMES[Proposal.Status(proposal.status)]

    @extend_schema_field(VoteSerializer(many=True))
    def get_votes(self, proposal: Proposal) -> list[dict[str, Any]]:
        votes = sorted(proposal.votes.all(), key=lambda v: (v.block_number, v.pk))
        return VoteSerializer(votes, many=True).data  # type: ignore[return-value]


class SponsorApi(MemberApi):
    """Sponsor an application: opens its admission proposal on chain."""

    class InputSerializer(SignedInputSerializer):
        class Meta:
            ref_name = "SponsorInput"

    @extend_schema(
        tags=["applications"],
        request=InputSerializer,
        responses={201: ProposalOutputSerializer, **_errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, member_id: int) -> Response:
        applicant = _application(request, member_id)
        sponsor = _governing_staff(request, "sponsor an application").member
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        proposal = services.admission_sponsor(
            sponsor=sponsor,
            applicant=applicant,
            signature=data.validated_data["signature"],
        )
        return Response(ProposalOutputSerializer(proposal).data, status=status.HTTP_201_CREATED)


def _member(request: Request, member_id: int) -> Member:
    return get_object_or_404(selectors.member_list(viewer=request.user), pk=member_id)


def _rotating_staff(request: Request, member: Member) -> Staff:
    """The admin of `member` itself (while active), or of an active hospital member."""
    staff = selectors.staff_of(request.user)
    if (
        staff is not None
        and staff.role == Staff.Role.ADMIN
        and staff.member_id == member.pk
        and member.is_active
    ):
        return staff
    return _governing_staff(request, f"propose a new governance address for {member.name}")


class RemovalTypedDataApi(MemberApi):
    """The EIP-712 removal proposal for the proposing member's wallet to sign."""

    @extend_schema(
        tags=["members"],
        request=None,
        responses={200: TypedDataSerializer, **_errors(400, 403, 404, 503)},
    )
    def post(self, request: Request, member_id: int) -> Response:
        member = _member(request, member_id)
        proposer = _governing_staff(request, "propose removing a member").member
        return _typed_response(services.removal_typed_data(proposer=proposer, member=member))


class RemovalProposeApi(MemberApi):
    """Propose removing a member: opens a removal proposal on chain for the members to vote on."""

    class InputSerializer(SignedInputSerializer):
        class Meta:
            ref_name = "RemovalProposeInput"

    @extend_schema(
        tags=["members"],
        request=InputSerializer,
        responses={201: ProposalOutputSerializer, **_errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, member_id: int) -> Response:
        member = _member(request, member_id)
        proposer = _governing_staff(request, "propose removing a member").member
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        proposal = services.removal_propose(
            proposer=proposer, member=member, signature=data.validated_data["signature"]
        )
        return Response(ProposalOutputSerializer(proposal).data, status=status.HTTP_201_CREATED)


def _new_governance_field() -> serializers.RegexField:
    return hex_field(
        40,
        "an Ethereum address",
        help_text="the address (0x + 40 hex) that is to sign for the member; no member, "
        "applicant or delegate may have used it",
    )


class RotationTypedDataApi(MemberApi):
    """The EIP-712 rotation proposal for the proposing member's wallet to sign."""

    class InputSerializer(serializers.Serializer):
        new_governance = _new_governance_field()

        class Meta:
            ref_name = "RotationTypedDataInput"

    @extend_schema(
        tags=["members"],
        request=InputSerializer,
        responses={200: TypedDataSerializer, **_errors(400, 403, 404, 503)},
    )
    def post(self, request: Request, member_id: int) -> Response:
        member = _member(request, member_id)
        proposer = _rotating_staff(request, member).member
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        typed = services.rotation_typed_data(
            proposer=proposer, member=member, new_governance=data.validated_data["new_governance"]
        )
        return _typed_response(typed)


class RotationProposeApi(MemberApi):
    """Propose a new governance address for a member (its own admin or a hospital's may)."""

    class InputSerializer(SignedInputSerializer):
        new_governance = _new_governance_field()

        class Meta:
            ref_name = "RotationProposeInput"

    @extend_schema(
        tags=["members"],
        request=InputSerializer,
        responses={201: ProposalOutputSerializer, **_errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, member_id: int) -> Response:
        member = _member(request, member_id)
        proposer = _rotating_staff(request, member).member
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        proposal = services.rotation_propose(
            proposer=proposer,
            member=member,
            new_governance=data.validated_data["new_governance"],
            signature=data.validated_data["signature"],
        )
        return Response(ProposalOutputSerializer(proposal).data, status=status.HTTP_201_CREATED)


class ProposalListApi(MemberApi):
    @extend_schema(tags=["proposals"], responses={200: ProposalOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        proposals = selectors.proposal_list(viewer=request.user)
        return Response(ProposalOutputSerializer(proposals, many=True).data)


def _proposal(request: Request, proposal_id: int) -> Proposal:
    return get_object_or_404(
        selectors.proposal_list(viewer=request.user), chain_proposal_id=proposal_id
    )


class ProposalDetailApi(MemberApi):
    @extend_schema(tags=["proposals"], responses={200: ProposalOutputSerializer, **_errors(404)})
    def get(self, request: Request, proposal_id: int) -> Response:
        return Response(ProposalOutputSerializer(_proposal(request, proposal_id)).data)


class VoteTypedDataApi(MemberApi):
    """The EIP-712 vote for the voting member's wallet to sign."""

    class InputSerializer(serializers.Serializer):
        support = serializers.BooleanField(help_text="true for yes, false for no")

        class Meta:
            ref_name = "VoteTypedDataInput"

    @extend_schema(
        tags=["proposals"],
        request=InputSerializer,
        responses={200: TypedDataSerializer, **_errors(400, 403, 404, 503)},
    )
    def post(self, request: Request, proposal_id: int) -> Response:
        proposal = _proposal(request, proposal_id)
        voter = _governing_staff(request, "vote").member
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        typed = services.vote_typed_data(
            voter=voter, proposal=proposal, support=data.validated_data["support"]
        )
        return _typed_response(typed)


class VoteCastApi(MemberApi):
    """Cast the member's vote; the portal relays the signature to the chain."""

    class InputSerializer(SignedInputSerializer):
        support = serializers.BooleanField(help_text="true for yes, false for no")

        class Meta:
            ref_name = "VoteCastInput"

    @extend_schema(
        tags=["proposals"],
        request=InputSerializer,
        responses={200: ProposalOutputSerializer, **_errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, proposal_id: int) -> Response:
        proposal = _proposal(request, proposal_id)
        voter = _governing_staff(request, "vote").member
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        proposal = services.vote_cast(
            voter=voter,
            proposal=proposal,
            support=data.validated_data["support"],
            signature=data.validated_data["signature"],
        )
        return Response(ProposalOutputSerializer(proposal).data)


class ProposalFinalizeApi(MemberApi):
    """Close a proposal whose deadline passed without a decision."""

    @extend_schema(
        tags=["proposals"],
        request=None,
        responses={200: ProposalOutputSerializer, **_errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, proposal_id: int) -> Response:
        proposal = _proposal(request, proposal_id)
        staff = _governing_staff(request, "finalize a proposal")
        proposal = services.proposal_finalize(proposal=proposal, by=staff.member)
        return Response(ProposalOutputSerializer(proposal).data)


class StaffOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField(source="user.username")
    email = serializers.EmailField(source="user.email")
    role = serializers.ChoiceField(choices=Staff.Role.choices)
    member = MemberRefSerializer()
    created_at = serializers.DateTimeField()


class StaffListApi(MemberApi):
    """The people acting for the viewer's member."""

    @extend_schema(tags=["staff"], responses={200: StaffOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        staff = selectors.staff_list(viewer=request.user).select_related("member")
        return Response(StaffOutputSerializer(staff, many=True).data)


class StaffRemoveApi(MemberApi):
    """Remove a person from the member's staff; their login stops working."""

    @extend_schema(tags=["staff"], request=None, responses={204: None, **_errors(400, 403, 404)})
    def delete(self, request: Request, staff_id: int) -> Response:
        staff = get_object_or_404(selectors.staff_list(viewer=request.user), pk=staff_id)
        admin = _admin_staff(request, "remove staff")
        services.staff_remove(admin=admin, staff=staff)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationOutputSerializer(serializers.Serializer):
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
        responses={201: InvitationOutputSerializer, **_errors(400, 403)},
    )
    def post(self, request: Request) -> Response:
        admin = _admin_staff(request, "invite staff")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation = services.staff_invite(admin=admin, **data.validated_data)
        return Response(InvitationOutputSerializer(invitation).data, status=status.HTTP_201_CREATED)


class InvitationListApi(MemberApi):
    """The admin's invitations, open and accepted."""

    @extend_schema(
        tags=["staff"], responses={200: InvitationOutputSerializer(many=True), **_errors(403)}
    )
    def get(self, request: Request) -> Response:
        _admin_staff(request, "see invitations")
        invitations = selectors.invitation_list(viewer=request.user).select_related("member")
        return Response(InvitationOutputSerializer(invitations, many=True).data)


class InvitationAcceptApi(PublicApi):
    """Accept an invitation with its token: creates the invitee's login."""

    class InputSerializer(serializers.Serializer):
        token = serializers.CharField(max_length=64)
        username = _username_field()
        password = serializers.CharField(
            write_only=True, max_length=4096, style={"input_type": "password"}
        )

        class Meta:
            ref_name = "InvitationAcceptInput"

        def validate_password(self, value: str) -> str:
            try:
                password_validation.validate_password(value)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(list(exc.messages)) from exc
            return value

    @extend_schema(
        tags=["staff"],
        request=InputSerializer,
        responses={201: StaffOutputSerializer, **_errors(400)},
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
        responses={200: OutputSerializer, **_errors(400, 429)},
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
        if _needs_second_factor(user):
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


class TokenOutputSerializer(serializers.Serializer):
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


class TokenListApi(MemberApi):
    """The caller's own API tokens (never their keys), newest first."""

    @extend_schema(tags=["auth"], responses={200: TokenOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        current = request.auth.pk if isinstance(request.auth, ApiToken) else None
        tokens = api_token_list(viewer=request.user)
        return Response(TokenOutputSerializer(tokens, many=True, context={"current": current}).data)


class TokenRevokeApi(MemberApi):
    """Revoke one of the caller's API tokens; it stops working at once."""

    @extend_schema(tags=["auth"], responses={204: None, **_errors(404)})
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
