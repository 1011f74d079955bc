"""REST API for resumable uploads: the typed data to sign, then open, send chunks, commit
or abort. Only the admin or a data steward of an active member uploads."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.core.apis import SecondFactorVerified, TypedDataSerializer, typed_data
from portal.core.exceptions import ServiceError
from portal.core.schema import error_responses
from portal.core.serializers import SignedInputSerializer, hex_field, signature_field
from portal.core.signing import signature_or_demo
from portal.datasets import selectors, services
from portal.datasets.manifest import grant_hash, parse_wrapped_key
from portal.datasets.models import Upload
from portal.datasets.permissions import (
    IsUploader,
    request_uploader,
)
from portal.datasets.serializers import (
    DatasetOutputSerializer,
    GrantInputSerializer,
    GrantKeySerializer,
    catalogue_entry,
    signer_field,
)


class UploadTypedDataApi(APIView):
    """The typed data to sign for a new version: the manifest, then each grant in order."""

    permission_classes = [IsUploader, SecondFactorVerified]

    class InputSerializer(serializers.Serializer):
        dataset_id = serializers.UUIDField(help_text="a new UUID, or an own dataset's id")
        manifest_sha256 = hex_field(
            64, "a SHA-256", help_text="0x + SHA-256 of the canonical manifest"
        )
        signer = signer_field()
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
        responses={200: OutputSerializer, **error_responses(400, 403, 503)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        manifest_sha256 = data.validated_data["manifest_sha256"]
        pairs = []
        for entry in data.validated_data["grants"]:
            node = services.active_node_or_error(entry["node_id"])
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
            member=request_uploader(request),
            dataset_id=data.validated_data["dataset_id"],
            manifest_sha256=manifest_sha256,
            signer=data.validated_data.get("signer") or None,
            grants=pairs,
        )
        out = {
            "version": plan.version,
            "previous": plan.previous,
            "signer": plan.signer,
            "manifest": typed_data(plan.manifest_typed),
            "grants": [typed_data(t) for t in plan.grants_typed],
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
        signer = signer_field()
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
            **error_responses(400, 403, 413, 503),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        grants = []
        for entry in data.validated_data["grants"]:
            grants.append(
                services.GrantRequest(
                    node=services.active_node_or_error(entry["node_id"]),
                    wrapped_key=parse_wrapped_key(entry["wrapped_key"]),
                    signature=entry["signature"],
                )
            )
        upload, created = services.upload_create(
            user=request.user,  # type: ignore[arg-type]
            member=request_uploader(request),
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

    @extend_schema(
        tags=["datasets"], responses={200: UploadOutputSerializer, **error_responses(403, 404)}
    )
    def get(self, request: Request, upload_id: uuid.UUID) -> Response:
        return Response(UploadOutputSerializer(_upload(request, upload_id)).data)


class UploadChunkApi(APIView):
    """Store ciphertext chunk ``index`` (raw body); re-sending a stored chunk is harmless."""

    permission_classes = [IsUploader, SecondFactorVerified]

    @extend_schema(
        tags=["datasets"],
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: UploadOutputSerializer, **error_responses(400, 403, 404, 413)},
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
        responses={200: UploadOutputSerializer, **error_responses(400, 403, 404, 413)},
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
        responses={200: OutputSerializer, **error_responses(400, 403, 404, 409, 503)},
    )
    def post(self, request: Request, upload_id: uuid.UUID) -> Response:
        upload = services.upload_commit(upload=_upload(request, upload_id))
        assert upload.dataset is not None
        return Response(
            {
                "upload": UploadOutputSerializer(upload).data,
                "dataset": catalogue_entry(upload.dataset),
            }
        )


class UploadAbortApi(APIView):
    """Give up an upload: its chunks are deleted at once."""

    permission_classes = [IsUploader, SecondFactorVerified]

    @extend_schema(
        tags=["datasets"],
        request=None,
        responses={200: UploadOutputSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, upload_id: uuid.UUID) -> Response:
        upload = services.upload_abort(upload=_upload(request, upload_id))
        return Response(UploadOutputSerializer(upload).data)
