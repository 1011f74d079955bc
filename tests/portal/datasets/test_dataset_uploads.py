from __future__ import annotations

import hashlib
import sqlite3
import uuid
from datetime import timedelta

import pytest
from datasets_api_helpers import (
    CATALOGUE,
    UPLOADS,
    assert_json_error,
    chunk_bytes,
    create_upload,
    grant_entry,
    put_chunk,
    sign,
)
from django.core.files.storage import default_storage
from django.utils import timezone

from portal.datasets.models import Dataset, DatasetVersion, Grant, Upload, chunk_storage_path
from training.ingest.dataset import package_dataset

pytestmark = pytest.mark.django_db


def _stored_files(dataset_id: str) -> list[str]:
    if not default_storage.exists(f"datasets/{dataset_id}"):
        return []
    found = []
    for version in default_storage.listdir(f"datasets/{dataset_id}")[0]:
        found += default_storage.listdir(f"datasets/{dataset_id}/{version}")[1]
    return found


def test_it_uploads_resumes_commits_and_shows_the_catalogue_entry(
    datasets_chain, member_admin, second_admin, node, package, tmp_path, api_as
):
    api = api_as(member_admin)
    created = create_upload(api, package, [grant_entry(package, node)])
    assert created.status_code == 201, created.content
    upload = created.json()
    assert upload["expected_chunks"] == len(package.chunks) == 3
    assert [c["sha256"] for c in upload["chunks"]] == [c.sha256 for c in package.chunks]

    # The connection drops after the first chunk: nothing is visible yet.
    assert put_chunk(api, upload["id"], 0, chunk_bytes(tmp_path, 0)).status_code == 200
    assert api_as(second_admin).get(CATALOGUE).json()["results"] == []

    status = api.get(f"{UPLOADS}{upload['id']}/").json()
    assert status["received"] == [0] and status["missing"] == [1, 2]
    for index in status["missing"]:
        response = put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
        assert response.status_code == 200, response.content
    # Re-sending a stored chunk is harmless.
    assert put_chunk(api, upload["id"], 1, chunk_bytes(tmp_path, 1)).json()["received"] == [0, 1, 2]

    committed = api.post(f"{UPLOADS}{upload['id']}/commit/")
    assert committed.status_code == 200, committed.content
    body = committed.json()
    assert body["upload"]["state"] == "committed" and body["upload"]["error"] == ""
    manifest_hash = "0x" + package.manifest_sha256
    assert body["dataset"]["version"]["manifest_sha256"] == manifest_hash

    assert datasets_chain.version_of(body["dataset"]["chain_id"], manifest_hash) == 1
    assert datasets_chain.grant_of(body["dataset"]["chain_id"], node.node_id).active

    catalogue = api_as(second_admin).get(CATALOGUE).json()["results"]
    assert len(catalogue) == 1
    entry = catalogue[0]
    assert entry["owner"]["name"] == "St. Mary's Hospital"
    assert entry["modality"] == "CT" and entry["instances"] == 20
    assert entry["version"]["number"] == 1
    assert entry["version"]["anchored_tx"].startswith("0x")
    assert "manifest" not in entry and "chunks" not in entry["version"]


def test_it_refuses_a_chunk_with_a_wrong_hash_naming_it(
    datasets_chain, member_admin, second_admin, node, package, tmp_path, api_as
):
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    data = bytearray(chunk_bytes(tmp_path, 1))
    data[100] ^= 0xFF
    body = assert_json_error(put_chunk(api, upload["id"], 1, bytes(data)), 400, "chunk 1")
    assert body["code"] == "chunk_mismatch"
    assert not default_storage.exists(chunk_storage_path(upload["dataset_id"], 1, 1))
    assert api.get(f"{UPLOADS}{upload['id']}/").json()["received"] == []
    assert api_as(second_admin).get(CATALOGUE).json()["results"] == []


def test_it_refuses_a_chunk_that_is_not_in_the_manifest(
    datasets_chain, member_admin, node, package, tmp_path, api_as
):
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    assert_json_error(put_chunk(api, upload["id"], 9, b"x" * 40), 400, "chunk 9")


def test_it_refuses_a_chunk_over_the_size_limit(
    datasets_chain, member_admin, node, package, tmp_path, api_as, settings
):
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    settings.DATASET_MAX_CHUNK_BYTES = 1000
    assert_json_error(put_chunk(api, upload["id"], 0, chunk_bytes(tmp_path, 0)), 413, "chunk 0")


def test_it_refuses_to_commit_with_a_missing_chunk(
    datasets_chain, member_admin, second_admin, node, package, tmp_path, api_as
):
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    for index in (0, 2):
        put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
    body = assert_json_error(api.post(f"{UPLOADS}{upload['id']}/commit/"), 400, "(1)")
    assert body["code"] == "chunks_missing"
    dataset = Dataset.objects.get(pk=package.manifest["dataset_id"])
    assert datasets_chain.version_of(dataset.chain_id, "0x" + package.manifest_sha256) == 0
    assert api_as(second_admin).get(CATALOGUE).json()["results"] == []
    # Still open: the missing chunk can be sent and the commit succeeds.
    put_chunk(api, upload["id"], 1, chunk_bytes(tmp_path, 1))
    assert api.post(f"{UPLOADS}{upload['id']}/commit/").status_code == 200


def test_it_cleans_up_an_abandoned_upload(
    datasets_chain, member_admin, node, package, tmp_path, api_as
):
    from django.core.management import call_command

    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    put_chunk(api, upload["id"], 0, chunk_bytes(tmp_path, 0))
    path = chunk_storage_path(upload["dataset_id"], 1, 0)
    assert default_storage.exists(path)

    call_command("cleanup_uploads")  # not expired yet: kept
    assert default_storage.exists(path)

    Upload.objects.filter(pk=upload["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    call_command("cleanup_uploads")
    assert not default_storage.exists(path)
    row = Upload.objects.get(pk=upload["id"])
    assert row.state == Upload.State.EXPIRED and row.version is None
    assert not Dataset.objects.exists() and not DatasetVersion.objects.exists()
    assert not Grant.objects.exists()
    assert_json_error(put_chunk(api, upload["id"], 1, chunk_bytes(tmp_path, 1)), 400, "expired")


def test_it_discards_everything_when_the_chain_refuses_the_anchor(
    datasets_chain, member_admin, node, package, tmp_path, api_as, consortium
):
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    for index in range(3):
        put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
    # Another action by the same key uses the nonce the manifest was signed at.
    other = {
        "dataset_id": "0x" + (1 << 128 | 0x77).to_bytes(32, "big").hex(),  # member 1's
        "version": 1,
        "manifest_hash": "0x" + "88" * 32,
    }
    typed = datasets_chain.anchor_manifest_typed(signer=consortium[0].address, **other)
    datasets_chain.send_signed(
        "AnchorManifest",
        typed["message"],
        sign(consortium[0].key, typed),
        signer=consortium[0].address,
    )
    body = assert_json_error(api.post(f"{UPLOADS}{upload['id']}/commit/"), 409, "chain")
    assert body["code"] == "MemberSignedInvalidSignature"
    assert Upload.objects.get(pk=upload["id"]).state == Upload.State.FAILED
    assert not default_storage.exists(chunk_storage_path(upload["dataset_id"], 1, 0))
    assert not Dataset.objects.exists()


def test_it_returns_the_open_upload_when_the_same_manifest_is_posted_again(
    datasets_chain, member_admin, node, package, tmp_path, api_as
):
    api = api_as(member_admin)
    first = create_upload(api, package, [grant_entry(package, node)]).json()
    put_chunk(api, first["id"], 0, chunk_bytes(tmp_path, 0))
    again = create_upload(api, package, [grant_entry(package, node)])
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["received"] == [0]


def test_it_accepts_a_manifest_signed_by_the_members_wallet(
    datasets_chain, member_admin, node, package, api_as, consortium
):
    from datasets_api_helpers import TYPED, sign

    api = api_as(member_admin)
    grants = [grant_entry(package, node)]
    typed = api.post(
        TYPED,
        {
            "dataset_id": package.dataset_id,
            "manifest_sha256": "0x" + package.manifest_sha256,
            "grants": grants,
        },
        format="json",
    ).json()
    assert typed["version"] == 1
    assert typed["manifest"]["domain"]["name"] == "MedChain Datasets"
    key = consortium[0].key
    grants[0]["signature"] = sign(key, typed["grants"][0])
    response = create_upload(
        api, package, grants, signer=consortium[0].address, signature=sign(key, typed["manifest"])
    )
    assert response.status_code == 201, response.content


def test_it_refuses_a_manifest_signed_by_another_key(
    datasets_chain, member_admin, node, package, api_as, consortium
):
    from datasets_api_helpers import TYPED, sign

    api = api_as(member_admin)
    typed = api.post(
        TYPED,
        {"dataset_id": package.dataset_id, "manifest_sha256": "0x" + package.manifest_sha256},
        format="json",
    ).json()
    wrong = sign(consortium[1].key, typed["manifest"])
    assert_json_error(
        create_upload(api, package, [grant_entry(package, node)], signature=wrong),
        400,
        "not by",
    )
    assert not Dataset.objects.exists()


def test_it_refuses_a_signer_that_is_not_the_owner_or_a_data_delegate(
    datasets_chain, member_admin, node, package, api_as, consortium
):
    response = create_upload(
        api_as(member_admin),
        package,
        [grant_entry(package, node)],
        signer=consortium[1].address,
        signature="0x" + "11" * 65,
    )
    assert_json_error(response, 400, "Data delegates")


def test_it_refuses_an_upload_by_a_clinician_or_the_outsider(
    datasets_chain, clinician, outsider, node, package, api_as
):
    for user in (clinician, outsider):
        response = create_upload(api_as(user), package, [grant_entry(package, node)])
        assert_json_error(response, 403, "data steward")
    assert not Dataset.objects.exists()


def test_it_hides_an_upload_from_another_member(
    datasets_chain, member_admin, second_admin, outsider, node, package, tmp_path, api_as
):
    upload = create_upload(api_as(member_admin), package, [grant_entry(package, node)]).json()
    assert api_as(second_admin).get(f"{UPLOADS}{upload['id']}/").status_code == 404
    data = chunk_bytes(tmp_path, 0)
    assert put_chunk(api_as(second_admin), upload["id"], 0, data).status_code == 404
    assert api_as(second_admin).post(f"{UPLOADS}{upload['id']}/commit/").status_code == 404
    assert put_chunk(api_as(outsider), upload["id"], 0, data).status_code == 403


def _mutations():
    def drop(name):
        return lambda m: m.pop(name)

    def put(name, value):
        return lambda m: m.__setitem__(name, value)

    def chunk(index, name, value):
        return lambda m: m["chunks"][index].__setitem__(name, value)

    return {
        "no format": drop("format"),
        "other format": put("format", "something/1"),
        "bad encryption": put("encryption", "ROT13"),
        "other dataset": put("dataset_id", "00000000-0000-0000-0000-000000000000"),
        "no chunks": put("chunks", []),
        "chunks not a list": put("chunks", "0,1,2"),
        "chunk gap": lambda m: m["chunks"].pop(1),
        "chunk bad hash": chunk(0, "sha256", "xyz"),
        "chunk upper hash": chunk(0, "sha256", "A" * 64),
        "chunk short": chunk(0, "size", 1000),
        "chunk tiny": chunk(2, "size", 3),
        "chunk size bool": chunk(2, "size", True),
        "instances zero": put("instances", 0),
        "instances string": put("instances", "20"),
        "annotated above instances": put("annotated_instances", 999),
        "annotations missing": drop("annotations"),
        "annotations bad hash": lambda m: m["annotations"].__setitem__("sha256", "00"),
        "modality empty": put("modality", ""),
        "ciphertext size wrong": put("ciphertext_size", 1),
        "owner of another member": put("owner", "0x" + "12" * 20),
        "not an object": lambda m: None,
    }


MUTATIONS = _mutations()


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_it_refuses_a_malformed_manifest_and_stores_nothing(
    case, datasets_chain, member_admin, node, package, api_as
):
    import copy

    manifest = copy.deepcopy(package.manifest)
    MUTATIONS[case](manifest)
    if case == "not an object":
        manifest = ["not", "a", "manifest"]
    api = api_as(member_admin)
    response = api.post(
        UPLOADS,
        {"dataset_id": package.dataset_id, "manifest": manifest, "grants": []},
        format="json",
    )
    assert 400 <= response.status_code < 500, response.content
    assert response.json()["error"]
    assert not Dataset.objects.exists() and not Upload.objects.exists()
    assert _stored_files(package.dataset_id) == []


def test_it_refuses_a_dataset_over_the_total_limit(
    datasets_chain, member_admin, node, package, api_as, settings
):
    settings.DATASET_MAX_BYTES = 1024
    response = create_upload(api_as(member_admin), package, [grant_entry(package, node)])
    assert_json_error(response, 400, "at most 1024")


def test_it_refuses_a_malformed_grant(datasets_chain, member_admin, node, package, api_as):
    grants = [{"node_id": node.node_id, "wrapped_key": "0x1234"}]
    assert_json_error(create_upload(api_as(member_admin), package, grants), 400, "wrapped key")
    grants = [{"node_id": "0x" + "ee" * 32, "wrapped_key": "0x" + "00" * 92}]
    assert_json_error(create_upload(api_as(member_admin), package, grants), 400, "no active")
    assert not Dataset.objects.exists()


def test_the_grant_hash_binds_the_version_and_node():
    from portal.datasets.manifest import grant_hash

    base = {"manifest_sha256": "0x" + "11" * 32, "node_id": "0x" + "22" * 32}
    one = grant_hash(**base, wrapped_key=b"k" * 92)
    assert one != grant_hash(**{**base, "node_id": "0x" + "23" * 32}, wrapped_key=b"k" * 92)
    assert one != grant_hash(**{**base, "manifest_sha256": "0x" + "12" * 32}, wrapped_key=b"k" * 92)
    assert (
        one
        == "0x"
        + hashlib.sha256(
            b"medchain-grant/1" + bytes.fromhex("11" * 32) + bytes.fromhex("22" * 32) + b"k" * 92
        ).hexdigest()
    )


def test_it_asks_the_granted_node_to_fetch_once_the_grant_is_on_chain(
    datasets_chain,
    member_admin,
    node,
    package,
    tmp_path,
    api_as,
    settings,
    django_capture_on_commit_callbacks,
):
    # The embedded broker's file (portal/core/broker.py): one row per queued message. A
    # channel creates the file and its tables when nothing has used the broker yet.
    from portal.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel  # noqa: B018 - opening it is the point
    broker = sqlite3.connect(settings.CELERY_BROKER_URL.removeprefix("sqlite://"))

    def node_messages() -> set[int]:
        rows = broker.execute("SELECT id FROM message WHERE queue = ?", (node.queue,))
        return {row[0] for row in rows}

    before = node_messages()
    api = api_as(member_admin)
    upload = create_upload(api, package, [grant_entry(package, node)]).json()
    for index in range(upload["expected_chunks"]):
        put_chunk(api, upload["id"], index, chunk_bytes(tmp_path, index))
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"{UPLOADS}{upload['id']}/commit/").status_code == 200
    queued = node_messages() - before
    assert len(queued) == 1
    with broker:  # the message is for this test only: leave the queue as it was
        broker.executemany("DELETE FROM message WHERE id = ?", [(i,) for i in queued])
    broker.close()


def test_a_member_cannot_hold_more_than_its_quota_in_open_uploads(
    datasets_chain, member_admin, node, package, phantoms, tmp_path, api_as, settings
):
    """A steward opens upload after upload and never commits: the quota stops the next one."""
    source, annotations = phantoms
    second = package_dataset(
        source, annotations, tmp_path / "pkg-2", dataset_id=str(uuid.uuid4()), uid_secret=b"t" * 32
    )
    settings.DATASET_UPLOAD_QUOTA_BYTES = package.ciphertext_size + second.ciphertext_size - 1
    api = api_as(member_admin)
    first = create_upload(api, package, [grant_entry(package, node)])
    assert first.status_code == 201, first.content
    # Re-posting the same manifest resumes the open upload: it takes no more of the quota.
    assert create_upload(api, package, [grant_entry(package, node)]).status_code == 200

    refused = create_upload(api, second, [grant_entry(second, node)])
    body = assert_json_error(refused, 413, "over its quota", "finish or abort")
    assert body["code"] == "quota_exceeded"
    assert not Dataset.objects.filter(pk=second.dataset_id).exists()

    # Aborting the first frees the quota.
    assert api.post(f"{UPLOADS}{first.json()['id']}/abort/").status_code == 200
    assert create_upload(api, second, [grant_entry(second, node)]).status_code == 201
