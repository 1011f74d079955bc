"""The request body cap (REQUEST_MAX_BYTES) leaves ciphertext chunks to their own cap."""

from __future__ import annotations

import pytest
from datasets_api_helpers import chunk_bytes, create_upload, grant_entry, put_chunk

pytestmark = pytest.mark.django_db


def test_it_stores_a_chunk_larger_than_the_request_body_cap(
    datasets_chain, member_admin, node, package, tmp_path, api_as, settings
):
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    chunk = chunk_bytes(tmp_path, 0)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(chunk) // 2

    response = put_chunk(api, upload["id"], 0, chunk)

    assert response.status_code == 200, response.content
    assert response.json()["received"] == [0]


def test_it_still_refuses_a_chunk_over_its_own_cap(
    datasets_chain, member_admin, node, package, tmp_path, api_as, settings
):
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    chunk = chunk_bytes(tmp_path, 0)
    settings.DATASET_MAX_CHUNK_BYTES = len(chunk) - 1

    response = put_chunk(api, upload["id"], 0, chunk)

    assert response.status_code == 413
