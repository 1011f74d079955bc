"""REST API for membership: members, applications and sponsoring, removal and rotation,
proposals and votes. Staff, invitations and tokens are in account_apis.py.

Who sees what is decided by the selectors: an object outside the viewer's
queryset is a 404; an action the viewer may not take (``selectors.may_act``) is a 403.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, cast

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from portal.consortium import selectors, services
from portal.consortium.models import Member, Proposal
from portal.consortium.selectors import Action, acting_staff
from portal.core.apis import ListApi, MemberApi, PublicApi
from portal.core.schema import error_responses
from portal.core.serializers import (
    OutputSerializer,
    hex_field,
    new_password,
    signature_field,
    timestamps,
    username_field,
)
from portal.core.signed_apis import SignedActionApis, TypedDataApi


class MemberRefSerializer(OutputSerializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    governance_address = serializers.CharField()


class MemberOutputSerializer(OutputSerializer):
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


@extend_schema(tags=["members"])
class MemberListApi(ListApi):
    """Active members see every member and applicant; anyone else only their own."""

    serializer_class = MemberOutputSerializer

    def get_queryset(self) -> QuerySet[Member]:
        return selectors.member_list(viewer=self.request.user)


class MemberDetailApi(MemberApi):
    @extend_schema(
        tags=["members"], responses={200: MemberOutputSerializer, **error_responses(404)}
    )
    def get(self, request: Request, member_id: int) -> Response:
        member = get_object_or_404(selectors.member_list(viewer=request.user), pk=member_id)
        return Response(MemberOutputSerializer(member).data)


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


class ApplicationTypedDataApi(PublicApi, TypedDataApi):
    """The EIP-712 application for the applicant's wallet to sign."""

    action = "Application"
    tags = ["applications"]
    errors = (400, 503)

    class InputSerializer(ApplicationFieldsSerializer):
        class Meta:
            ref_name = "ApplicationTypedDataInput"

    def act(self, actor: None, subject: None, data: dict[str, Any]) -> Any:
        return services.application_typed_data(**data)


class ApplicationSubmitApi(PublicApi):
    """Apply to join, with the signed application; creates the applicant's admin login."""

    class InputSerializer(ApplicationFieldsSerializer):
        contact_email = serializers.EmailField(max_length=254)
        signature = signature_field("the applicant's governance address", required=True)
        admin_username = username_field()
        admin_password = serializers.CharField(
            write_only=True, max_length=4096, style={"input_type": "password"}
        )

        class Meta:
            ref_name = "ApplicationSubmitInput"

        def validate_admin_password(self, value: str) -> str:
            return new_password(value)

    @extend_schema(
        tags=["applications"],
        request=InputSerializer,
        responses={201: MemberOutputSerializer, **error_responses(400, 503)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.application_submit(**data.validated_data)
        return Response(MemberOutputSerializer(member).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["applications"])
class ApplicationListApi(ListApi):
    """Applications that wait for a hospital member to sponsor them."""

    serializer_class = MemberOutputSerializer

    def get_queryset(self) -> QuerySet[Member]:
        return selectors.applications_awaiting_sponsor(viewer=self.request.user)


class _MemberAction(MemberApi):
    """A signed action on a member the viewer sees (404 otherwise)."""

    def subject(self, request: Request, **kwargs: Any) -> Member:
        return get_object_or_404(selectors.member_list(viewer=request.user), pk=kwargs["member_id"])


class VoteSerializer(OutputSerializer):
    voter = MemberRefSerializer()
    support = serializers.BooleanField()
    tx_hash = serializers.CharField()
    block_number = serializers.IntegerField()


_KIND_NAMES = {k: k.name.lower() for k in Proposal.Kind}
_STATUS_NAMES = {s: s.name.lower() for s in Proposal.Status}


class ProposalOutputSerializer(OutputSerializer):
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
        return self._votes.to_representation(votes)  # type: ignore[no-any-return]

    @cached_property
    def _votes(self) -> serializers.ListSerializer:  # type: ignore[type-arg]
        # One for the whole page: a serializer built per row copies its fields per row.
        return VoteSerializer(many=True)  # type: ignore[return-value]


class _ProposalOpening(_MemberAction, SignedActionApis):
    """An action on a member that opens a proposal (201, the proposal)."""

    Output = ProposalOutputSerializer
    status_code = status.HTTP_201_CREATED


class Sponsor(_ProposalOpening):
    action = "SponsorAdmission"
    tags = ["applications"]
    inputs = ("", "SponsorInput")
    about = (
        "The EIP-712 sponsorship for the sponsoring member's wallet to sign.",
        "Sponsor an application: opens its admission proposal on chain.",
    )

    def typed(self, actor: Member, subject: Member, data: dict[str, Any]) -> Any:
        return services.sponsor_typed_data(sponsor=actor, applicant=subject)

    def relay(self, actor: Member, subject: Member, data: dict[str, Any]) -> Any:
        return services.admission_sponsor(
            sponsor=actor, applicant=subject, signature=data["signature"]
        )


class Removal(_ProposalOpening):
    action = "ProposeRemoval"
    tags = ["members"]
    inputs = ("", "RemovalProposeInput")
    about = (
        "The EIP-712 removal proposal for the proposing member's wallet to sign.",
        "Propose removing a member: opens a removal proposal on chain for the members to vote on.",
    )

    def typed(self, actor: Member, subject: Member, data: dict[str, Any]) -> Any:
        return services.removal_typed_data(proposer=actor, member=subject)

    def relay(self, actor: Member, subject: Member, data: dict[str, Any]) -> Any:
        return services.removal_propose(proposer=actor, member=subject, signature=data["signature"])


class Rotation(_ProposalOpening):
    action = "ProposeRotation"
    tags = ["members"]
    inputs = ("RotationTypedDataInput", "RotationProposeInput")
    about = (
        "The EIP-712 rotation proposal for the proposing member's wallet to sign.",
        "Propose a new governance address for a member (its own admin or a hospital's may).",
    )

    class Fields(serializers.Serializer):
        new_governance = hex_field(
            40,
            "an Ethereum address",
            help_text="the address (0x + 40 hex) that is to sign for the member; no member, "
            "applicant or delegate may have used it",
        )

    def typed(self, actor: Member, subject: Member, data: dict[str, Any]) -> Any:
        return services.rotation_typed_data(
            proposer=actor, member=subject, new_governance=data["new_governance"]
        )

    def relay(self, actor: Member, subject: Member, data: dict[str, Any]) -> Any:
        return services.rotation_propose(
            proposer=actor,
            member=subject,
            new_governance=data["new_governance"],
            signature=data["signature"],
        )


def proposal_entries(
    rows: list[dict[str, Any]], votes: dict[int, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """A page of ``selectors.proposal_rows`` with their ``selectors.proposal_votes``, as
    ``ProposalOutputSerializer`` answers each proposal, field for field and in its order.

    Built as plain dicts: DRF's fields, even ``OutputSerializer``'s, cost most of the route's
    CPU (a serializer and its nested ones copied per page, a lookup and a conversion per
    value). The columns are read as the fields read them; each has the type its field
    answers already (an integer column an int, a text one a str), but for the timestamps
    (``core.serializers.timestamps``) and the names of kind and status.
    tests/portal/consortium/test_proposal_rows.py checks them against the serializer.
    """
    timestamp = timestamps()
    now = timezone.now()
    entries = []
    for row in rows:
        sponsor = row["sponsor__id"]
        entries.append(
            {
                "id": row["chain_proposal_id"],
                "kind": _KIND_NAMES[Proposal.Kind(row["kind"])],
                "status": _STATUS_NAMES[Proposal.Status(row["status"])],
                # Proposal.is_open
                "is_open": row["status"] == Proposal.Status.OPEN and row["deadline"] > now,
                "subject": _member_ref(row, "subject"),
                "sponsor": None if sponsor is None else _member_ref(row, "sponsor"),
                "new_governance_address": row["new_governance_address"],
                "eligible": row["eligible"],
                "yes": row["yes"],
                "no": row["no"],
                "deadline": timestamp(row["deadline"]),
                "opened_block": row["opened_block"],
                "decided_block": row["decided_block"],
                "votes": [
                    {
                        "voter": _member_ref(vote, "voter"),
                        "support": vote["support"],
                        "tx_hash": vote["tx_hash"],
                        "block_number": vote["block_number"],
                    }
                    for vote in votes.get(row["id"], ())
                ],
            }
        )
    return entries


def _member_ref(row: dict[str, Any], relation: str) -> dict[str, Any]:
    """A ``MemberRef`` from a plain row's ``<relation>__<field>`` columns
    (``selectors.MEMBER_REF_FIELDS``, in the serializer's order)."""
    return {name: row[column] for name, column in _REF_COLUMNS[relation]}


_REF_COLUMNS = {
    relation: tuple((name, f"{relation}__{name}") for name in selectors.MEMBER_REF_FIELDS)
    for relation in ("subject", "sponsor", "voter")
}


@extend_schema(tags=["proposals"])
class ProposalListApi(ListApi):
    """Newest first, with their votes."""

    serializer_class = ProposalOutputSerializer  # what each entry is (the schema's)

    def get_queryset(self) -> QuerySet[Any]:
        # PreparedRows counts and slices as a queryset does, which is all the paginator asks.
        return cast(QuerySet[Any], selectors.proposal_rows(viewer=self.request.user))

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rows = self.paginate_queryset(self.get_queryset())
        if rows is None:  # every list route is paged (REST_FRAMEWORK's pagination class)
            raise RuntimeError("the proposals route answers pages")
        votes = selectors.proposal_votes([row["id"] for row in rows])
        return self.get_paginated_response(proposal_entries(list(rows), votes))


def _proposal(request: Request, proposal_id: int) -> Proposal:
    return get_object_or_404(
        selectors.proposal_list(viewer=request.user), chain_proposal_id=proposal_id
    )


class ProposalDetailApi(MemberApi):
    @extend_schema(
        tags=["proposals"], responses={200: ProposalOutputSerializer, **error_responses(404)}
    )
    def get(self, request: Request, proposal_id: int) -> Response:
        return Response(ProposalOutputSerializer(_proposal(request, proposal_id)).data)


class _ProposalAction(MemberApi):
    """A signed action on a proposal the viewer sees (404 otherwise)."""

    def subject(self, request: Request, **kwargs: Any) -> Proposal:
        return _proposal(request, kwargs["proposal_id"])


class Vote(_ProposalAction, SignedActionApis):
    action = "Vote"
    tags = ["proposals"]
    Output = ProposalOutputSerializer
    inputs = ("VoteTypedDataInput", "VoteCastInput")
    about = (
        "The EIP-712 vote for the voting member's wallet to sign.",
        "Cast the member's vote; the portal relays the signature to the chain.",
    )

    class Fields(serializers.Serializer):
        support = serializers.BooleanField(help_text="true for yes, false for no")

    def typed(self, actor: Member, subject: Proposal, data: dict[str, Any]) -> Any:
        return services.vote_typed_data(voter=actor, proposal=subject, support=data["support"])

    def relay(self, actor: Member, subject: Proposal, data: dict[str, Any]) -> Any:
        return services.vote_cast(
            voter=actor,
            proposal=subject,
            support=data["support"],
            signature=data["signature"],
        )


class ProposalFinalizeApi(MemberApi):
    """Close a proposal whose deadline passed without a decision."""

    @extend_schema(
        tags=["proposals"],
        request=None,
        responses={200: ProposalOutputSerializer, **error_responses(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, proposal_id: int) -> Response:
        proposal = _proposal(request, proposal_id)
        staff = acting_staff(viewer=request.user, action=Action.FINALIZE)
        proposal = services.proposal_finalize(proposal=proposal, by=staff.member)
        return Response(ProposalOutputSerializer(proposal).data)
