"""Helpers of the dataset tests: API calls, grants, signatures, and a requests
adapter that sends a node's REST calls into the Django test client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from django.test import Client
from requests.adapters import BaseAdapter
from rest_framework.test import APIClient

from chain import eip712
from chain.deployment import DeploymentRecord
from portal.nodes.agent.keystore import NodeKeystore
from training.crypto import wrap_key
from training.ingest.dataset import PackageResult, chunk_file_name

NODE_PASSWORD = "node-pass"
UPLOADS = "/api/v1/datasets/uploads/"
TYPED = "/api/v1/datasets/uploads/typed-data/"
CATALOGUE = "/api/v1/datasets/"


def chunk_bytes(tmp_path: Path, index: int) -> bytes:
    return (tmp_path / "pkg" / chunk_file_name(index)).read_bytes()


def token_for(node) -> str:
    from portal.nodes import services

    return services.node_token_issue(node=node)


def node_api(node) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(node)}")
    return client


def grant_entry(package: PackageResult, node) -> dict[str, str]:
    wrapped = wrap_key(
        package.data_key,
        bytes.fromhex(node.data_public_key[2:]),
        dataset_id=package.dataset_id,
        node_id=node.node_id,
    )
    return {"node_id": node.node_id, "wrapped_key": "0x" + wrapped.to_bytes().hex()}


def create_upload(api: APIClient, package: PackageResult, grants: list[dict[str, str]], **extra):
    """POST the manifest; the demo keystores sign what has no signature (asked explicitly)."""
    payload: dict[str, Any] = {
        "dataset_id": package.dataset_id,
        "title": "Phantom CT",
        "manifest": package.manifest,
        "grants": grants,
        "demo_keystore": True,
        **extra,
    }
    return api.post(UPLOADS, payload, format="json")


def put_chunk(api: APIClient, upload_id: str, index: int, data: bytes):
    return api.put(
        f"{UPLOADS}{upload_id}/chunks/{index}/", data, content_type="application/octet-stream"
    )


def upload_and_commit(
    api: APIClient, package: PackageResult, grants: list[dict[str, str]], folder: Path
) -> dict[str, Any]:
    """Upload the package packaged into `folder` and commit it; the dataset as the API says."""
    upload = create_upload(api, package, grants)
    assert upload.status_code in (200, 201), upload.content
    body = upload.json()
    for index in range(body["expected_chunks"]):
        data = (folder / chunk_file_name(index)).read_bytes()
        stored = put_chunk(api, body["id"], index, data)
        assert stored.status_code == 200, stored.content
    committed = api.post(f"{UPLOADS}{body['id']}/commit/")
    assert committed.status_code == 200, committed.content
    return committed.json()["dataset"]


def sign(key: str, typed: dict[str, Any]) -> str:
    return "0x" + eip712.sign_typed(key, typed).hex()


def assert_json_error(response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    for word in words:
        assert word in body["error"], body["error"]
    return body


class DjangoTestAdapter(BaseAdapter):
    """Sends requests' calls to the Django test client, so REST-only code runs in-process."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        client = Client()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("content-length", "host")
        }
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        url = request.url or ""
        path = url.split("://", 1)[1].split("/", 1)[1]
        answer = client.generic(
            request.method or "GET",
            "/" + path,
            data=body,
            content_type=headers.pop("Content-Type", "application/octet-stream"),
            headers=headers,
        )
        response = requests.Response()
        response.status_code = answer.status_code
        if getattr(answer, "streaming", False):
            content = b"".join(answer.streaming_content)  # type: ignore[attr-defined]
        else:
            content = answer.content
        response._content = content
        response.headers.update({k: v for k, v in answer.items()})
        response.url = url
        response.request = request
        return response

    def close(self) -> None:
        pass


@dataclass
class NodeSide:
    client: Any
    keystore: NodeKeystore


def pinned_record(chain_client) -> DeploymentRecord:
    """What a hospital pins on its node: the real deployment, known before any compromise."""
    from portal.core import chain as portal_chain

    return DeploymentRecord(
        chain_id=chain_client.chain_id,
        registry=portal_chain.deployment(portal_chain.REGISTRY).address,
        datasets=portal_chain.deployment(portal_chain.DATASETS).address,
    )


def node_side(node, keystore: NodeKeystore) -> NodeSide:
    from portal.nodes.agent.fetch import DatasetClient

    client = DatasetClient("http://testserver", token_for(node))
    client.session.mount("http://testserver/", DjangoTestAdapter())
    return NodeSide(client=client, keystore=keystore)
