"""REST API for encrypted datasets: the catalogue, resumable uploads, owner
actions (grants, withdrawal, access log) and the routes a training node uses.

Who sees what is decided by the selectors. The outsider (staff of a member
that is not active) is refused on every route; a member that is not the
owner sees catalogue rows only; a node sees only what it holds a grant for.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.files.storage import default_storage
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.consortium.apis import (
    SecondFactorVerified,
    TypedDataSerializer,
    _jsonable,
)
from portal.core.apis import ServiceError
from portal.core.schema import errors as _errors
from portal.core.serializers import SignedInputSerializer, hex_field, signature_field
from portal.core.signing import parse_bytes32, signature_or_demo
from portal.datasets import selectors, services
from portal.datasets.manifest import grant_hash, parse_wrapped_key
from portal.datasets.models import Dataset, Grant, Upload
from portal.nodes.models import Node
from portal.nodes.selectors import node_of
from training.crypto import WRAPPED_KEY_SIZE


def _typed(typed: dict[str, Any]) -> dict[str, Any]:
    return TypedDataSerializer(_jsonable(typed)).data  # type: ignore[return-value]


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


def _node(request: Request) -> Node:
    node = node_of(request.user)
    assert node is not None  # IsNode
    return node


def _uploader(request: Request) -> Any:
    member = selectors.uploader_member(request.user)
    assert member is not None  # IsUploader
    return member


def _visible(request: Request, dataset_id: uuid.UUID) -> Dataset:
    dataset = selectors.dataset_get(viewer=request.user, dataset_id=dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id} in the catalogue")
    return dataset


def _owned(request: Request, dataset_id: uuid.UUID, action: str) -> Dataset:
    dataset = _visible(request, dataset_id)
    if not selectors.owned_dataset_list(viewer=request.user).filter(pk=dataset.pk).exists():
        raise PermissionDenied(
            f"only {dataset.owner.name}'s admin or data stewards may {action} this dataset"
        )
    return dataset


def _node_ref(node_id: str) -> Node:
    return services.node_get(node_id)


class OwnerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    governance_address = serializers.CharField()
    chain_member_id = serializers.IntegerField(allow_null=True)


class VersionSummarySerializer(serializers.Serializer):
    number = serializers.IntegerField()
    state = serializers.CharField()
    manifest_sha256 = serializers.CharField(help_text="the hash anchored on chain")
    previous = serializers.CharField()
    signer_address = serializers.CharField()
    chunk_count = serializers.IntegerField()
    ciphertext_size = serializers.IntegerField()
    anchored_tx = serializers.CharField()
    anchored_block = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class DatasetOutputSerializer(serializers.Serializer):
    """A catalogue entry: who owns it, what it holds, its anchor; never its content."""

    id = serializers.UUIDField()
    chain_id = serializers.CharField(help_text="the bytes32 dataset id on chain")
    title = serializers.CharField()
    owner = OwnerSerializer()
    modality = serializers.CharField()
    instances = serializers.IntegerField()
    annotated_instances = serializers.IntegerField()
    boxes = serializers.IntegerField()
    status = serializers.CharField(help_text="active or withdrawn")
    withdrawn_tx = serializers.CharField()
    version = VersionSummarySerializer(source="latest_shown_version", allow_null=True)
    created_at = serializers.DateTimeField()


def _catalogue(dataset: Dataset) -> dict[str, Any]:
    dataset.latest_shown_version = (  # type: ignore[attr-defined]
        dataset.versions.exclude(state="uploading").order_by("-number").first()
    )
    return DatasetOutputSerializer(dataset).data  # type: ignore[return-value]


class DatasetListApi(APIView):
    """The catalogue: every anchored dataset of the consortium, without content."""

    permission_classes = [IsMemberStaff, SecondFactorVerified]

    @extend_schema(tags=["datasets"], responses={200: DatasetOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        datasets = selectors.dataset_list(viewer=request.user)
        return Response([_catalogue(d) for d in datasets])


class DatasetDetailApi(APIView):
    permission_classes = [IsMemberStaff, SecondFactorVerified]

    @extend_schema(tags=["datasets"], responses={200: DatasetOutputSerializer, **_errors(403, 404)})
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        return Response(_catalogue(_visible(request, dataset_id)))


def _node_id_field() -> serializers.RegexField:
    return hex_field(64, "a bytes32 node id", help_text="the training node's bytes32 id")


def _wrapped_key_field() -> serializers.RegexField:
    return hex_field(
        2 * WRAPPED_KEY_SIZE,
        f"the {WRAPPED_KEY_SIZE}-byte wrapped key",
        help_text=f"hex of the {WRAPPED_KEY_SIZE}-byte key wrapped to the node",
    )


def _signer_field() -> serializers.RegexField:
    return hex_field(
        40,
        "an Ethereum address",
        required=False,
        allow_blank=True,
        help_text="the governance address or a Data delegate's; the governance address if blank",
    )


def _grant_signer_field() -> serializers.RegexField:
    return hex_field(
        40,
        "an Ethereum address",
        required=False,
        allow_blank=True,
        help_text=(
            "a Data delegate of the owner, for a node of the owner's own; left out, the "
            "governance address (a grant to another member's node takes that key)"
        ),
    )


_GRANT_SIGNATURE = (
    "the grant's signer (RecordGrant): the owner's governance key, or for the owner's own "
    "node the Data delegate that signs the manifest"
)


class GrantKeySerializer(serializers.Serializer):
    node_id = _node_id_field()
    wrapped_key = _wrapped_key_field()


class GrantInputSerializer(GrantKeySerializer):
    signature = signature_field(_GRANT_SIGNATURE)


class UploadTypedDataApi(APIView):
    """The typed data to sign for a new version: the manifest, then each grant in order."""

    permission_classes = [IsUploader, SecondFactorVerified]

    class InputSerializer(serializers.Serializer):
        dataset_id = serializers.UUIDField(help_text="a new UUID, or an own dataset's id")
        manifest_sha256 = hex_field(
            64, "a SHA-256", help_text="0x + SHA-256 of the canonical manifest"
        )
        signer = _signer_field()
        grants = GrantKeySerializer(many=True, required=False, default=list)

        class Meta:
            ref_name = "DatasetUploadTypedDataInput"

    class OutputSerializer(serializers.Serializer):
        version = serializers.IntegerField()
        previous = serializers.CharField()
        signer = serializers.CharField()
        manifest = TypedDataSerializer()
        grants = TypedDataSerializer(many=True)
        grant_hashes = serializers.ListField(child=serializers.CharField())
        grant_signers = serializers.ListField(
            child=serializers.CharField(),
            help_text=(
                "who signs each grant: the manifest's signer for the member's own nodes, the "
                "governance address for another member's node"
            ),
        )

        class Meta:
            ref_name = "DatasetUploadTypedDataOutput"

    @extend_schema(
        tags=["datasets"],
        request=InputSerializer,
        responses={200: OutputSerializer, **_errors(400, 403, 503)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        manifest_sha256 = data.validated_data["manifest_sha256"]
        pairs = []
        for entry in data.validated_data["grants"]:
            node = _node_ref(entry["node_id"])
            wrapped = parse_wrapped_key(entry["wrapped_key"])
            pairs.append(
                (
                    node,
                    grant_hash(
                        manifest_sha256=manifest_sha256, node_id=node.node_id, wrapped_key=wrapped
                    ),
                )
            )
        plan = services.upload_plan(
            member=_uploader(request),
            dataset_id=data.validated_data["dataset_id"],
            manifest_sha256=manifest_sha256,
            signer=data.validated_data.get("signer") or None,
            grants=pairs,
        )
        out = {
            "version": plan.version,
            "previous": plan.previous,
            "signer": plan.signer,
            "manifest": _typed(plan.manifest_typed),
            "grants": [_typed(t) for t in plan.grants_typed],
            "grant_hashes": list(plan.grant_hashes),
            "grant_signers": list(plan.grant_signers),
        }
        return Response(out)


class ChunkSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    sha256 = serializers.CharField()
    size = serializers.IntegerField()


class UploadOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    dataset_id = serializers.UUIDField(source="dataset_uuid")
    version = serializers.IntegerField(source="version_number")
    state = serializers.CharField(help_text="open, committed, failed or expired")
    error = serializers.CharField()
    expected_chunks = serializers.IntegerField()
    received = serializers.ListField(child=serializers.IntegerField())
    missing = serializers.ListField(child=serializers.IntegerField())
    chunks = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField()

    def get_chunks(self, upload: Upload) -> list[dict[str, Any]]:
        if upload.version is None:
            return []
        return list(upload.version.manifest["chunks"])


class UploadCreateApi(APIView):
    """Open a resumable upload for a signed manifest and its grants (nothing visible yet)."""

    permission_classes = [IsUploader, SecondFactorVerified]

    class InputSerializer(SignedInputSerializer):
        dataset_id = serializers.UUIDField()
        title = serializers.CharField(max_length=200, required=False, default="")
        manifest = serializers.JSONField(help_text="the manifest as packaged, unchanged")
        signer = _signer_field()
        signature = signature_field("the signer (AnchorManifest)")
        grants = GrantInputSerializer(many=True, required=False, default=list)

        class Meta:
            ref_name = "DatasetUploadCreateInput"

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            # The manifest's signature is checked by the base; each grant's the same way.
            demo_keystore = attrs.get("demo_keystore", False)
            attrs = super().validate(attrs)
            for entry in attrs["grants"]:
                try:
                    entry["signature"] = signature_or_demo(
                        signature=entry.get("signature"), demo_keystore=demo_keystore
                    )
                except ServiceError as exc:
                    raise ServiceError(
                        f"grant to {entry['node_id']}: {exc.message}", code=exc.code
                    ) from None
            return attrs

    @extend_schema(
        tags=["datasets"],
        request=InputSerializer,
        responses={
            201: UploadOutputSerializer,
            200: UploadOutputSerializer,
            **_errors(400, 403, 413, 503),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grants = []
        for entry in data.validated_data["grants"]:
            grants.append(
                services.GrantRequest(
                    node=_node_ref(entry["node_id"]),
                    wrapped_key=parse_wrapped_key(entry["wrapped_key"]),
                    signature=entry["signature"],
                )
            )
        upload, created = services.upload_create(
            user=request.user,  # type: ignore[arg-type]
            member=_uploader(request),
            dataset_id=data.validated_data["dataset_id"],
            title=data.validated_data["title"],
            manifest=data.validated_data["manifest"],
            signer=data.validated_data.get("signer") or None,
            signature=data.validated_data["signature"],
            grants=grants,
        )
        return Response(
            UploadOutputSerializer(upload).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


def _upload(request: Request, upload_id: uuid.UUID) -> Upload:
    upload = selectors.upload_get(viewer=request.user, upload_id=upload_id)
    if upload is None:
        raise NotFound(f"no upload {upload_id} of your member")
    return upload


class UploadDetailApi(APIView):
    """Which chunks the portal holds: a client resumes with the missing ones."""

    permission_classes = [IsUploader, SecondFactorVerified]

    @extend_schema(tags=["datasets"], responses={200: UploadOutputSerializer, **_errors(403, 404)})
    def get(self, request: Request, upload_id: uuid.UUID) -> Response:
        return Response(UploadOutputSerializer(_upload(request, upload_id)).data)


class UploadChunkApi(APIView):
    """Store ciphertext chunk ``index`` (raw body); re-sending a stored chunk is harmless."""

    permission_classes = [IsUploader, SecondFactorVerified]

    @extend_schema(
        tags=["datasets"],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: UploadOutputSerializer, **_errors(400, 403, 404, 413)},
    )
    def put(self, request: Request, upload_id: uuid.UUID, index: int) -> Response:
        upload = _upload(request, upload_id)
        limit = services.max_chunk_bytes()
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > limit:
            return _too_large(index, declared, limit)
        data = request._request.read(limit + 1)
        if len(data) > limit:
            return _too_large(index, len(data), limit)
        upload = services.upload_chunk_store(upload=upload, index=index, data=data)
        return Response(UploadOutputSerializer(upload).data)

    @extend_schema(
        tags=["datasets"],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: UploadOutputSerializer, **_errors(400, 403, 404, 413)},
    )
    def post(self, request: Request, upload_id: uuid.UUID, index: int) -> Response:
        return self.put(request, upload_id, index)


def _too_large(index: int, size: int, limit: int) -> Response:
    return Response(
        {
            "error": (
                f"chunk {index} is {size} bytes; this portal accepts at most {limit} per chunk"
            ),
            "code": "chunk_too_large",
        },
        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


class UploadCommitApi(APIView):
    """Anchor the manifest and record the grants; then the version is visible."""

    permission_classes = [IsUploader, SecondFactorVerified]

    class OutputSerializer(serializers.Serializer):
        upload = UploadOutputSerializer()
        dataset = DatasetOutputSerializer()

        class Meta:
            ref_name = "DatasetUploadCommitOutput"

    @extend_schema(
        tags=["datasets"],
        request=None,
        responses={200: OutputSerializer, **_errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, upload_id: uuid.UUID) -> Response:
        upload = services.upload_commit(upload=_upload(request, upload_id))
        assert upload.dataset is not None
        return Response(
            {"upload": UploadOutputSerializer(upload).data, "dataset": _catalogue(upload.dataset)}
        )


class UploadAbortApi(APIView):
    """Give up an upload: its chunks are deleted at once."""

    permission_classes = [IsUploader, SecondFactorVerified]

    @extend_schema(
        tags=["datasets"],
        request=None,
        responses={200: UploadOutputSerializer, **_errors(400, 403, 404)},
    )
    def post(self, request: Request, upload_id: uuid.UUID) -> Response:
        upload = services.upload_abort(upload=_upload(request, upload_id))
        return Response(UploadOutputSerializer(upload).data)


class VersionOutputSerializer(VersionSummarySerializer):
    manifest = serializers.JSONField()
    signature = serializers.CharField()
    signature_nonce = serializers.IntegerField()


class VersionListApi(APIView):
    """The owner's view of every version, with its signed manifest."""

    permission_classes = [IsUploader, SecondFactorVerified]

    @extend_schema(
        tags=["datasets"], responses={200: VersionOutputSerializer(many=True), **_errors(403, 404)}
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = _owned(request, dataset_id, "see the versions of")
        versions = selectors.version_list(viewer=request.user, dataset=dataset)
        return Response(VersionOutputSerializer(versions, many=True).data)


class GrantOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField(source="version.number")
    node_id = serializers.CharField(source="node.node_id")
    node_member = serializers.CharField(source="node.member.name")
    cross_member = serializers.BooleanField(help_text="a node of another member (server mode)")
    state = serializers.CharField(help_text="active, replaced or revoked")
    grant_hash = serializers.CharField()
    recorded_tx = serializers.CharField()
    revoked_tx = serializers.CharField()
    created_at = serializers.DateTimeField()


class GrantListApi(APIView):
    permission_classes = [IsUploader, SecondFactorVerified]

    @extend_schema(
        tags=["datasets"], responses={200: GrantOutputSerializer(many=True), **_errors(403, 404)}
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = _owned(request, dataset_id, "see the grants of")
        grants = selectors.grant_list(viewer=request.user, dataset=dataset)
        return Response(GrantOutputSerializer(grants, many=True).data)


class GrantTypedDataApi(APIView):
    """The RecordGrant typed data (latest version) for the owner's governance key, or for a
    Data delegate granting an own node."""

    permission_classes = [IsUploader, SecondFactorVerified]

    class InputSerializer(GrantKeySerializer):
        signer = _grant_signer_field()

        class Meta:
            ref_name = "DatasetGrantTypedDataInput"

    @extend_schema(
        tags=["datasets"],
        request=InputSerializer,
        responses={200: TypedDataSerializer, **_errors(400, 403, 404, 503)},
    )
    def post(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = _owned(request, dataset_id, "grant access to")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wrapped = parse_wrapped_key(data.validated_data["wrapped_key"])
        _, _, typed = services.grant_typed_data(
            dataset=dataset,
            node=_node_ref(data.validated_data["node_id"]),
            wrapped_key=wrapped,
            signer=data.validated_data.get("signer") or None,
        )
        return Response(_typed(typed))


class GrantAddApi(APIView):
    """Grant a node the latest version's key; recorded on chain."""

    permission_classes = [IsUploader, SecondFactorVerified]

    class InputSerializer(SignedInputSerializer):
        node_id = _node_id_field()
        wrapped_key = _wrapped_key_field()
        signature = signature_field(_GRANT_SIGNATURE)
        signer = _grant_signer_field()

        class Meta:
            ref_name = "DatasetGrantAddInput"

    @extend_schema(
        tags=["datasets"],
        request=InputSerializer,
        responses={201: GrantOutputSerializer, **_errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = _owned(request, dataset_id, "grant access to")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grant = services.grant_add(
            dataset=dataset,
            node=_node_ref(data.validated_data["node_id"]),
            wrapped_key=data.validated_data["wrapped_key"],
            signature=data.validated_data["signature"],
            signer=data.validated_data.get("signer") or None,
        )
        return Response(GrantOutputSerializer(grant).data, status=status.HTTP_201_CREATED)


def _version_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False,
        min_value=1,
        help_text=(
            "the version whose grant to revoke; left out, the node's newest grant. A node "
            "holds one grant per dataset on chain: a newer version's grant replaces the older"
        ),
    )


def _grant_ref(request: Request, dataset: Dataset, node_id: str, version: int | None) -> Grant:
    node_id = parse_bytes32(node_id, "node id")
    grant = selectors.grant_get(
        viewer=request.user, dataset=dataset, node_id=node_id, version_number=version
    )
    if grant is None:
        which = f"v{version} of " if version else ""
        raise NotFound(f"node {node_id} holds no grant on {which}{dataset.title}")
    return grant


class GrantRevokeTypedDataApi(APIView):
    """The RevokeGrant typed data for a node's grant on a version (or its newest grant)."""

    permission_classes = [IsUploader, SecondFactorVerified]

    class InputSerializer(serializers.Serializer):
        version = _version_field()

        class Meta:
            ref_name = "DatasetGrantRevokeTypedDataInput"

    @extend_schema(
        tags=["datasets"],
        request=InputSerializer,
        responses={200: TypedDataSerializer, **_errors(400, 403, 404, 503)},
    )
    def post(self, request: Request, dataset_id: uuid.UUID, node_id: str) -> Response:
        dataset = _owned(request, dataset_id, "revoke grants of")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grant = _grant_ref(request, dataset, node_id, data.validated_data.get("version"))
        return Response(_typed(services.grant_revoke_typed_data(grant=grant)))


class GrantRevokeApi(APIView):
    """Revoke a node's grant on a version (or its newest grant), on chain: the portal releases
    no more ciphertext to the node; a key it already unwrapped cannot be recalled."""

    permission_classes = [IsUploader, SecondFactorVerified]

    class InputSerializer(SignedInputSerializer):
        version = _version_field()
        signature = signature_field("the owner's governance key (RevokeGrant)")

        class Meta:
            ref_name = "DatasetGrantRevokeInput"

    @extend_schema(
        tags=["datasets"],
        request=InputSerializer,
        responses={200: GrantOutputSerializer, **_errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, dataset_id: uuid.UUID, node_id: str) -> Response:
        dataset = _owned(request, dataset_id, "revoke grants of")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grant = services.grant_revoke(
            grant=_grant_ref(request, dataset, node_id, data.validated_data.get("version")),
            signature=data.validated_data["signature"],
        )
        return Response(GrantOutputSerializer(grant).data)


class WithdrawTypedDataApi(APIView):
    permission_classes = [IsUploader, SecondFactorVerified]

    @extend_schema(
        tags=["datasets"],
        request=None,
        responses={200: TypedDataSerializer, **_errors(403, 404, 503)},
    )
    def post(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = _owned(request, dataset_id, "withdraw")
        return Response(_typed(services.withdraw_typed_data(dataset=dataset)))


class WithdrawApi(APIView):
    """Withdraw a dataset for good (on chain): its ciphertext is no longer released."""

    permission_classes = [IsUploader, SecondFactorVerified]

    class InputSerializer(SignedInputSerializer):
        signature = signature_field("the owner's governance key (WithdrawDataset)")

        class Meta:
            ref_name = "DatasetWithdrawInput"

    @extend_schema(
        tags=["datasets"],
        request=InputSerializer,
        responses={200: DatasetOutputSerializer, **_errors(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = _owned(request, dataset_id, "withdraw")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = services.dataset_withdraw(
            dataset=dataset, signature=data.validated_data["signature"]
        )
        return Response(_catalogue(dataset))


class AccessLogOutputSerializer(serializers.Serializer):
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


class AccessLogPageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="entries in the whole log")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = AccessLogOutputSerializer(many=True)


class AccessLogPagination(PageNumberPagination):
    """Newest first, page by page: a flood of entries pushes none out of reach."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class AccessLogApi(APIView):
    """Every release, decryption and refusal of the dataset: who, what, when (paged)."""

    permission_classes = [IsUploader, SecondFactorVerified]

    @extend_schema(
        tags=["datasets"],
        parameters=[
            OpenApiParameter("page", int, description="page number, from 1"),
            OpenApiParameter("page_size", int, description="entries per page: 100, at most 1000"),
        ],
        responses={200: AccessLogPageSerializer, **_errors(403, 404)},
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        dataset = _owned(request, dataset_id, "see the access log of")
        entries = selectors.access_log_list(viewer=request.user, dataset=dataset)
        paginator = AccessLogPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(AccessLogOutputSerializer(page, many=True).data)


_VERSION_PARAM = OpenApiParameter(
    "version", int, description="a version number; the latest one granted to this node if absent"
)


def _node_dataset(request: Request, dataset_id: uuid.UUID) -> Dataset:
    dataset = selectors.node_dataset_get(dataset_id=dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id}")
    return dataset


def _version_param(request: Request, *, required: bool) -> int | None:
    raw = request.query_params.get("version", "")
    if not raw:
        if required:
            raise ServiceError("give the version number as ?version=N")
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ServiceError("version must be a positive integer")
    return int(raw)


class NodeManifestApi(APIView):
    """For a node with an active grant: the signed manifest, its anchor and the wrapped key."""

    permission_classes = [IsNode]

    class OutputSerializer(serializers.Serializer):
        dataset_id = serializers.UUIDField()
        chain_dataset_id = serializers.CharField()
        version = serializers.IntegerField()
        manifest = serializers.JSONField()
        manifest_sha256 = serializers.CharField()
        signature = serializers.CharField()
        signer_address = serializers.CharField()
        signature_nonce = serializers.IntegerField()
        previous = serializers.CharField()
        owner = OwnerSerializer()
        anchor = serializers.DictField(help_text="chain_id, contract, tx_hash, block_number")
        grant = serializers.DictField(
            help_text="node_id, wrapped_key, grant_hash, signature, signature_nonce, signer"
        )

        class Meta:
            ref_name = "DatasetNodeManifestOutput"

    @extend_schema(
        tags=["datasets"],
        parameters=[_VERSION_PARAM],
        responses={200: OutputSerializer, **_errors(400, 403, 404, 503)},
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        node = _node(request)
        dataset = _node_dataset(request, dataset_id)
        grant = services.node_release_manifest(
            node=node, dataset=dataset, version_number=_version_param(request, required=False)
        )
        version = grant.version
        registry = services.dataset_registry()
        out = {
            "dataset_id": dataset.pk,
            "chain_dataset_id": dataset.chain_id,
            "version": version.number,
            "manifest": version.manifest,
            "manifest_sha256": version.manifest_sha256,
            "signature": version.signature,
            "signer_address": version.signer_address,
            "signature_nonce": version.signature_nonce,
            "previous": version.previous,
            "owner": dataset.owner,
            "anchor": {
                "chain_id": registry.client.chain_id,
                "contract": registry.address,
                "tx_hash": version.anchored_tx,
                "block_number": version.anchored_block,
            },
            "grant": {
                "node_id": node.node_id,
                "wrapped_key": grant.wrapped_key,
                "grant_hash": grant.grant_hash,
                "signature": grant.signature,
                "signature_nonce": grant.signature_nonce,
                "signer": grant.signer_address,
            },
        }
        return Response(self.OutputSerializer(out).data)


class NodeChunkApi(APIView):
    """For a node with an active grant: ciphertext chunk ``index`` (logged as a release)."""

    permission_classes = [IsNode]

    @extend_schema(
        tags=["datasets"],
        parameters=[_VERSION_PARAM],
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            **_errors(400, 403, 404),
        },
    )
    def get(self, request: Request, dataset_id: uuid.UUID, index: int) -> FileResponse:
        node = _node(request)
        dataset = _node_dataset(request, dataset_id)
        _, path = services.node_release_chunk(
            node=node,
            dataset=dataset,
            version_number=_version_param(request, required=True) or 0,
            index=index,
        )
        return FileResponse(
            default_storage.open(path, "rb"), content_type="application/octet-stream"
        )


class NodeReportApi(APIView):
    """The node says whether it verified and decrypted a version, or refused it and why."""

    permission_classes = [IsNode]

    class InputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)
        outcome = serializers.ChoiceField(choices=["ok", "refused"])
        reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)

        class Meta:
            ref_name = "DatasetNodeReportInput"

    class OutputSerializer(serializers.Serializer):
        recorded = serializers.BooleanField()

        class Meta:
            ref_name = "DatasetNodeReportOutput"

    @extend_schema(
        tags=["datasets"],
        request=InputSerializer,
        responses={201: OutputSerializer, **_errors(400, 403, 404)},
    )
    def post(self, request: Request, dataset_id: uuid.UUID) -> Response:
        node = _node(request)
        dataset = _node_dataset(request, dataset_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.node_report(
            node=node,
            dataset=dataset,
            version_number=data.validated_data["version"],
            ok=data.validated_data["outcome"] == "ok",
            reason=data.validated_data.get("reason", ""),
        )
        return Response(
            self.OutputSerializer({"recorded": True}).data, status=status.HTTP_201_CREATED
        )
