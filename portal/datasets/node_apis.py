"""REST API for a training node: the manifest and wrapped key of a version it holds a
grant on, its ciphertext chunks (each release logged), and its report on what it did."""

from __future__ import annotations

import uuid

from django.core.files.storage import default_storage
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.core.exceptions import ServiceError
from portal.core.schema import error_responses
from portal.datasets import selectors, services
from portal.datasets.models import Dataset
from portal.datasets.permissions import (
    IsNode,
    request_node,
)
from portal.datasets.serializers import (
    OwnerSerializer,
)

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
        responses={200: OutputSerializer, **error_responses(400, 403, 404, 503)},
    )
    def get(self, request: Request, dataset_id: uuid.UUID) -> Response:
        node = request_node(request)
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
            **error_responses(400, 403, 404),
        },
    )
    def get(self, request: Request, dataset_id: uuid.UUID, index: int) -> FileResponse:
        node = request_node(request)
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
        responses={201: OutputSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, dataset_id: uuid.UUID) -> Response:
        node = request_node(request)
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
