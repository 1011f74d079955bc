"""REST API for encrypted datasets: the catalogue and the owner's actions (versions,
grants, withdrawal, access log). Uploads are in upload_apis.py, a training node's routes in
node_apis.py.

Who sees what is decided by the selectors. The outsider (staff of a member
that is not active) is refused on every route; a member that is not the
owner sees catalogue rows only; a node sees only what it holds a grant for.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, cast

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.consortium.models import Member
from portal.core.apis import ListApi, SecondFactorVerified
from portal.core.schema import error_responses
from portal.core.serializers import OutputSerializer, iso_timestamps
from portal.core.signed_apis import SignedActionApis
from portal.datasets import selectors, services
from portal.datasets.manifest import parse_wrapped_key
from portal.datasets.models import AccessLog, Dataset, DatasetVersion, Grant
from portal.datasets.permissions import (
    IsMemberStaff,
    IsUploader,
)
from portal.datasets.serializers import (
    GRANT_SIGNATURE,
    DatasetOutputSerializer,
    GrantKeySerializer,
    VersionSummarySerializer,
    catalogue_entries,
    catalogue_entry,
    grant_signer_field,
)


def _visible(request: Request, dataset_id: uuid.UUID) -> Dataset:
    dataset = selectors.dataset_get(viewer=request.user, dataset_id=dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id} in the catalogue")
    return dataset


def _owned(request: Request, dataset_id: uuid.UUID, verb: str) -> Dataset:
    dataset = _visible(request, dataset_id)
    selectors.owner_acting(viewer=request.user, dataset=dataset, verb=verb)
    return dataset


class _DatasetAction(APIView):
    permission_classes = [IsUploader, SecondFactorVerified]
    tags: ClassVar[Sequence[str]] = ["datasets"]

    def subject(self, request: Request, **kwargs: Any) -> Dataset:
        return _visible(request, kwargs["dataset_id"])


@extend_schema(tags=["datasets"])
class DatasetListApi(ListApi):
    """The catalogue: every anchored dataset of the consortium, without content."""

    permission_classes = [IsMemberStaff, SecondFactorVerified]
    serializer_class = DatasetOutputSerializer

    def get_queryset(self) -> QuerySet[Any]:
        # PreparedRows counts and slices as a queryset does, which is all the paginator asks;
        # DRF's signature names only QuerySet.
        rows = selectors.catalogue_rows(viewer=self.request.user, iso_timestamps=iso_timestamps())
        return cast(QuerySet[Any], rows)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rows = self.paginate_queryset(self.get_queryset())
        if rows is None:  # every list route is paged (REST_FRAMEWORK's pagination class)
            raise RuntimeError("the catalogue answers pages")
        return self.get_paginated_response(catalogue_entries(list(rows)))


class DatasetDetailApi(APIView):
    permission_classes = [IsMemberStaff, SecondFactorVerified]

    @extend_schema(
        tags=["datasets"], responses={200: DatasetOutputSerializer, **error_responses(403, 404)}
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        return Response(catalogue_entry(_visible(request, dataset_id)))


class VersionOutputSerializer(VersionSummarySerializer):
    manifest = serializers.JSONField()
    signature = serializers.CharField()
    signature_nonce = serializers.IntegerField()


class _OwnerListApi(ListApi):
    """A list of one dataset's, for its owner's uploaders: 404 unseen, 403 not theirs."""

    permission_classes = [IsUploader, SecondFactorVerified]
    verb = ""

    def dataset(self) -> Dataset:
        return _owned(self.request, self.kwargs["dataset_id"], self.verb)


@extend_schema(tags=["datasets"])
class VersionListApi(_OwnerListApi):
    """The owner's view of every version, with its signed manifest."""

    serializer_class = VersionOutputSerializer
    verb = "see the versions of"

    def get_queryset(self) -> QuerySet[DatasetVersion]:
        if getattr(self, "swagger_fake_view", False):
            return DatasetVersion.objects.none()
        return selectors.version_list(viewer=self.request.user, dataset=self.dataset())


class GrantOutputSerializer(OutputSerializer):
    version = serializers.IntegerField(source="version.number")
    node_id = serializers.CharField(source="node.node_id")
    node_member = serializers.CharField(source="node.member.name")
    cross_member = serializers.BooleanField(help_text="a node of another member (server mode)")
    state = serializers.CharField(help_text="active, replaced or revoked")
    grant_hash = serializers.CharField()
    recorded_tx = serializers.CharField()
    revoked_tx = serializers.CharField()
    created_at = serializers.DateTimeField()


@extend_schema(tags=["datasets"])
class GrantListApi(_OwnerListApi):
    """Every grant of the dataset's versions, newest version first."""

    serializer_class = GrantOutputSerializer
    verb = "see the grants of"

    def get_queryset(self) -> QuerySet[Grant]:
        if getattr(self, "swagger_fake_view", False):
            return Grant.objects.none()
        return selectors.grant_list(viewer=self.request.user, dataset=self.dataset())


class GrantAddition(_DatasetAction, SignedActionApis):
    action = "RecordGrant"
    Output = GrantOutputSerializer
    status_code = status.HTTP_201_CREATED
    signed_by = GRANT_SIGNATURE
    inputs = ("DatasetGrantTypedDataInput", "DatasetGrantAddInput")
    about = (
        "The RecordGrant typed data (latest version) for the owner's governance key, or for a\n"
        "Data delegate granting an own node.",
        "Grant a node the latest version's key; recorded on chain.",
    )

    class Fields(GrantKeySerializer):
        signer = grant_signer_field()

    def typed(self, actor: Member, subject: Dataset, data: dict[str, Any]) -> Any:
        wrapped = parse_wrapped_key(data["wrapped_key"])
        _, _, typed = services.grant_typed_data(
            dataset=subject,
            node=services.active_node_or_error(data["node_id"]),
            wrapped_key=wrapped,
            signer=data.get("signer") or None,
        )
        return typed

    def relay(self, actor: Member, subject: Dataset, data: dict[str, Any]) -> Any:
        return services.grant_add(
            dataset=subject,
            node=services.active_node_or_error(data["node_id"]),
            wrapped_key=data["wrapped_key"],
            signature=data["signature"],
            signer=data.get("signer") or None,
        )


class GrantRevocation(_DatasetAction, SignedActionApis):
    action = "RevokeGrant"
    Output = GrantOutputSerializer
    signed_by = "the owner's governance key (RevokeGrant)"
    inputs = ("DatasetGrantRevokeTypedDataInput", "DatasetGrantRevokeInput")
    about = (
        "The RevokeGrant typed data for a node's grant on a version (or its newest grant).",
        "Revoke a node's grant on a version (or its newest grant), on chain: the portal releases\n"
        "no more ciphertext to the node; a key it already unwrapped cannot be recalled.",
    )

    class Fields(serializers.Serializer):
        version = serializers.IntegerField(
            required=False,
            min_value=1,
            help_text=(
                "the version whose grant to revoke; left out, the node's newest grant. A node "
                "holds one grant per dataset on chain: a newer version's grant replaces the "
                "older"
            ),
        )

    def grant(self, dataset: Dataset, data: dict[str, Any]) -> Grant:
        return selectors.grant_named(
            viewer=self.request.user,
            dataset=dataset,
            node_id=self.kwargs["node_id"],
            version_number=data.get("version"),
        )

    def typed(self, actor: Member, subject: Dataset, data: dict[str, Any]) -> Any:
        return services.grant_revoke_typed_data(grant=self.grant(subject, data))

    def relay(self, actor: Member, subject: Dataset, data: dict[str, Any]) -> Any:
        return services.grant_revoke(grant=self.grant(subject, data), signature=data["signature"])


class Withdrawal(_DatasetAction, SignedActionApis):
    action = "WithdrawDataset"
    Output = DatasetOutputSerializer
    # 400: the dataset is already withdrawn (schemathesis withdrew it, then asked again)
    signed_by = "the owner's governance key (WithdrawDataset)"
    inputs = ("", "DatasetWithdrawInput")
    about = (
        "",
        "Withdraw a dataset for good (on chain): its ciphertext is no longer released.",
    )

    def typed(self, actor: Member, subject: Dataset, data: dict[str, Any]) -> Any:
        return services.withdraw_typed_data(dataset=subject)

    def relay(self, actor: Member, subject: Dataset, data: dict[str, Any]) -> Any:
        return services.dataset_withdraw(dataset=subject, signature=data["signature"])

    def output(self, result: Any) -> Any:
        return catalogue_entry(result)


class AccessLogOutputSerializer(OutputSerializer):
    at = serializers.DateTimeField()
    action = serializers.CharField(help_text="release, decrypt or refuse")
    what = serializers.CharField(help_text="manifest, chunk or dataset")
    version = serializers.IntegerField(source="version.number", allow_null=True)
    chunk = serializers.IntegerField(allow_null=True)
    node_id = serializers.CharField(source="node.node_id", allow_null=True)
    username = serializers.CharField(source="user.username", allow_null=True)
    detail = serializers.CharField()
    self_reported = serializers.BooleanField(
        help_text="the node's own word (a decrypted or refused report), not seen by the portal"
    )


@extend_schema(tags=["datasets"])
class AccessLogApi(_OwnerListApi):
    """Every release, decryption and refusal of the dataset: who, what, when; newest first,
    page by page, so a flood of entries pushes none out of reach."""

    serializer_class = AccessLogOutputSerializer
    verb = "see the access log of"

    def get_queryset(self) -> QuerySet[AccessLog]:
        if getattr(self, "swagger_fake_view", False):
            return AccessLog.objects.none()
        return selectors.access_log_list(viewer=self.request.user, dataset=self.dataset())
