from __future__ import annotations

import pytest
from datasets_api_helpers import (
    CATALOGUE,
    UPLOADS,
    assert_json_error,
    chunk_bytes,
    create_upload,
    grant_entry,
    put_chunk,
)

from tests.routes import fill, methods, routes

pytestmark = pytest.mark.django_db


@pytest.fixture
def anchored(datasets_chain, member_admin, node, package, tmp_path, api_as):
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    for index in range(upload["expected_chunks"]):
        put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
    return api.post(f"{UPLOADS}{upload['id']}/commit/").json()["dataset"]


def _dataset_routes(dataset: dict, node_id: str) -> list[tuple[str, str, str]]:
    """(method, path, url name) of every dataset API route the resolver knows, filled in
    with the anchored dataset, its upload and the granted node."""
    from portal.datasets.models import Upload

    values = {
        "dataset_id": dataset["id"],
        "upload_id": str(Upload.objects.get(dataset_uuid=dataset["id"]).id),
        "node_id": node_id,
        "index": "0",
    }
    found = []
    for route, pattern in routes():
        if route.startswith("api/v1/datasets/"):
            path = fill(route, lambda converter, name: values.get(name))
            found += [(method, path, pattern.name or "") for method in methods(pattern)]
    return found


def test_it_walks_every_dataset_route(anchored, node):
    found = _dataset_routes(anchored, node.node_id)
    assert ("get", CATALOGUE, "api-dataset-list") in found
    assert ("put", "api-dataset-upload-chunk") in [(method, name) for method, _, name in found]
    assert len({name for _, _, name in found}) == 20


def test_it_refuses_the_outsider_on_every_route(anchored, outsider, node, api_as):
    api = api_as(outsider)
    for method, url, _ in _dataset_routes(anchored, node.node_id):
        response = getattr(api, method)(url, {}, format="json")
        assert response.status_code == 403, (method, url, response.content)
        assert response.json()["error"]


def test_it_refuses_anonymous_callers(anchored, node, api_as):
    api = api_as(None)
    for method, url, _ in _dataset_routes(anchored, node.node_id):
        response = getattr(api, method)(url, {}, format="json")
        assert response.status_code == 401, (method, url, response.content)


def test_it_shows_the_catalogue_but_no_content_to_another_member(
    anchored, second_admin, node, api_as
):
    api = api_as(second_admin)
    detail = api.get(f"/api/v1/datasets/{anchored['id']}/")
    assert detail.status_code == 200
    assert detail.json()["version"]["manifest_sha256"] == anchored["version"]["manifest_sha256"]
    for method, url, name in _dataset_routes(anchored, node.node_id):
        if anchored["id"] in url and name != "api-dataset-detail":
            response = getattr(api, method)(url, {}, format="json")
            assert response.status_code == 403, (method, url, response.content)


def test_a_clinician_sees_the_catalogue_but_cannot_manage(anchored, clinician, api_as):
    api = api_as(clinician)
    assert [d["id"] for d in api.get(CATALOGUE).json()["results"]] == [anchored["id"]]
    assert_json_error(api.get(f"/api/v1/datasets/{anchored['id']}/versions/"), 403, "steward")


def test_the_owner_sees_versions_and_grants(anchored, member_admin, node, package, api_as):
    api = api_as(member_admin)
    versions = api.get(f"/api/v1/datasets/{anchored['id']}/versions/").json()["results"]
    assert [v["number"] for v in versions] == [1]
    assert versions[0]["manifest"] == package.manifest
    grants = api.get(f"/api/v1/datasets/{anchored['id']}/grants/").json()["results"]
    assert [(g["node_id"], g["state"], g["cross_member"]) for g in grants] == [
        (node.node_id, "active", False)
    ]


def test_an_unknown_dataset_is_a_json_404(datasets_chain, member_admin, api_as):
    response = api_as(member_admin).get("/api/v1/datasets/00000000-0000-0000-0000-000000000001/")
    assert_json_error(response, 404, "no dataset")
