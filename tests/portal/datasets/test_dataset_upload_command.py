from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import requests
from datasets_api_helpers import DjangoTestAdapter
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from chain import eip712
from chain.keystore import write_keystore
from portal.core.tokens import api_token_issue
from portal.datasets.management.commands.upload_dataset import RPC_ENV, Command
from portal.datasets.models import Dataset, Upload

pytestmark = pytest.mark.django_db


class FlakyAdapter(DjangoTestAdapter):
    """Drops the connection after `chunks` chunk uploads, like a network cut."""

    def __init__(self, chunks: int | None) -> None:
        super().__init__()
        self.left = chunks

    def send(self, request, **kwargs):
        if request.method == "PUT" and self.left is not None:
            if self.left == 0:
                raise requests.ConnectionError("connection reset by peer")
            self.left -= 1
        return super().send(request, **kwargs)


def _session(adapter):
    def make() -> requests.Session:
        session = requests.Session()
        session.mount("http://testserver/", adapter)
        return session

    return make


@pytest.fixture(autouse=True)
def own_chain(steward_chain):
    """Every upload here reads node keys over the steward's own chain connection."""


@pytest.fixture
def steward_files(consortium, member_admin, tmp_path: Path):
    keystore = tmp_path / "governance.json"
    write_keystore(keystore, consortium[0].key, "pw", kdf="pbkdf2", iterations=1024)
    (tmp_path / "pw").write_text("pw\n")
    (tmp_path / "token").write_text(api_token_issue(user=member_admin)[1])
    return keystore


def _run(phantoms, steward_files, tmp_path: Path, adapter, monkeypatch) -> str:
    source, annotations = phantoms
    monkeypatch.setattr(Command, "session_factory", staticmethod(_session(adapter)))
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        call_command(
            "upload_dataset",
            str(source),
            annotations=str(annotations),
            portal="http://testserver",
            token_file=str(tmp_path / "token"),
            keystore=str(steward_files),
            password_file=str(tmp_path / "pw"),
            title="CLI phantoms",
            work_dir=str(tmp_path / "work"),
            stdout=stdout,
        )
    return out.read_text()


def test_the_cli_resumes_an_interrupted_upload_and_commits(
    datasets_chain, phantoms, steward_files, node, tmp_path, monkeypatch
):
    with pytest.raises(CommandError, match="cannot reach the portal"):
        _run(phantoms, steward_files, tmp_path, FlakyAdapter(chunks=1), monkeypatch)
    upload = Upload.objects.get()
    assert upload.state == Upload.State.OPEN and upload.received == [0]
    assert not Dataset.objects.filter(status=Dataset.Status.ACTIVE).exists()

    output = _run(phantoms, steward_files, tmp_path, FlakyAdapter(chunks=None), monkeypatch)
    assert "version 1 anchored" in output
    upload.refresh_from_db()
    assert upload.state == Upload.State.COMMITTED and Upload.objects.count() == 1
    dataset = Dataset.objects.get()
    assert dataset.title == "CLI phantoms" and dataset.status == Dataset.Status.ACTIVE
    grant = dataset.versions.get().grants.get()
    assert grant.node == node and grant.state == "active"


def test_the_cli_reports_a_bad_annotation_file_in_one_line(
    datasets_chain, phantoms, steward_files, node, tmp_path, monkeypatch
):
    source, _ = phantoms
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "medchain-annotations/1", "instances": {"1.2.3": {"boxes": []}}}')
    monkeypatch.setattr(Command, "session_factory", staticmethod(_session(DjangoTestAdapter())))
    with pytest.raises(CommandError) as failed:
        call_command(
            "upload_dataset",
            str(source),
            annotations=str(bad),
            portal="http://testserver",
            token_file=str(tmp_path / "token"),
            keystore=str(steward_files),
            password_file=str(tmp_path / "pw"),
            work_dir=str(tmp_path / "work"),
        )
    assert "\n" not in str(failed.value) and str(failed.value)
    assert not Upload.objects.exists()


def _run_as_steward(
    phantoms,
    steward,
    tmp_path: Path,
    monkeypatch,
    nodes: list[str] | None = None,
    *,
    uid_secret: bool = True,
) -> tuple[str, str]:
    """The README's command: the steward's token and own Data delegate keystore, and the UID
    secret file the admin handed over (``uid_secret=False``: none given)."""
    source, annotations = phantoms
    keystore = tmp_path / "steward.json"
    write_keystore(keystore, steward.key, "pw", kdf="pbkdf2", iterations=1024)
    (tmp_path / "pw").write_text("pw\n")
    (tmp_path / "steward-token").write_text(api_token_issue(user=steward.user)[1])
    secret: dict[str, str] = {}
    if uid_secret:
        (tmp_path / "uid-secret.bin").write_bytes(b"u" * 32)
        secret["uid_secret_file"] = str(tmp_path / "uid-secret.bin")
    monkeypatch.setattr(Command, "session_factory", staticmethod(_session(DjangoTestAdapter())))
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "upload_dataset",
        str(source),
        annotations=str(annotations),
        portal="http://testserver",
        token_file=str(tmp_path / "steward-token"),
        keystore=str(keystore),
        password_file=str(tmp_path / "pw"),
        node=nodes or [],
        **secret,
        work_dir=str(tmp_path / "work"),
        no_progress=True,
        stdout=out,
        stderr=err,
    )
    return out.getvalue(), err.getvalue()


def test_the_cli_uploads_and_grants_own_nodes_with_the_stewards_keystore_alone(
    datasets_chain, phantoms, steward, node, tmp_path, monkeypatch, settings
):
    settings.DEMO_KEYSTORES = False  # no governance key anywhere for the portal to fall back on
    output, errors = _run_as_steward(phantoms, steward, tmp_path, monkeypatch)
    assert "version 1 anchored" in output and errors == ""
    version = Dataset.objects.get(status=Dataset.Status.ACTIVE).versions.get()
    assert version.signer_address == steward.address
    grant = version.grants.get()
    assert (grant.node, grant.state, grant.signer_address) == (node, "active", steward.address)
    assert datasets_chain.grant_of(version.dataset.chain_id, node.node_id).active
    assert datasets_chain.nonce(steward.address) == 1  # the anchor
    pair = {"datasetId": version.dataset.chain_id, "nodeId": node.node_id}
    assert datasets_chain.nonce_for("RecordGrant", steward.address, pair) == 1  # the grant


def test_the_cli_leaves_a_grant_to_another_members_node_to_the_admin(
    datasets_chain,
    phantoms,
    steward,
    node,
    other_node,
    member_admin,
    consortium,
    tmp_path,
    monkeypatch,
    settings,
):
    settings.DEMO_KEYSTORES = False
    nodes = [f"{n.node_id}={n.data_public_key}" for n in (node, other_node)]
    output, errors = _run_as_steward(phantoms, steward, tmp_path, monkeypatch, nodes)
    assert "version 1 anchored" in output
    [line] = errors.splitlines()
    assert f"grant to node {other_node.node_id} left out" in line
    assert "another member's node" in line and "governance key" in line
    dataset = Dataset.objects.get(status=Dataset.Status.ACTIVE)
    assert f"/api/v1/datasets/{dataset.pk}/grants/add/" in line
    assert [g.node for g in dataset.versions.get().grants.all()] == [node]
    assert not datasets_chain.grant_of(dataset.chain_id, other_node.node_id).active

    # The admin signs that grant with the governance key, from the wrapped key the CLI kept.
    state = json.loads((tmp_path / "work" / "upload-state.json").read_text())
    [entry] = [g for g in state["grants"] if g["node_id"] == other_node.node_id]
    api = APIClient()
    api.force_authenticate(member_admin)
    base = f"/api/v1/datasets/{dataset.pk}/grants/add/"
    typed = api.post(base + "typed-data/", entry, format="json").json()
    signature = "0x" + eip712.sign_typed(consortium[0].key, typed).hex()
    response = api.post(base, {**entry, "signature": signature}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["cross_member"] is True
    assert datasets_chain.grant_of(dataset.chain_id, other_node.node_id).active


def test_the_cli_refuses_a_node_key_the_portal_lists_but_the_chain_does_not(
    phantoms, steward_files, node, tmp_path, monkeypatch
):
    """A compromised portal lists its own X25519 key for St. Mary's node, to read the data."""
    from portal.nodes.models import Node

    attacker_key = "0x" + "66" * 32
    Node.objects.filter(pk=node.pk).update(data_public_key=attacker_key)
    with pytest.raises(CommandError) as refused:
        _run(phantoms, steward_files, tmp_path, DjangoTestAdapter(), monkeypatch)
    message = str(refused.value)
    assert "\n" not in message
    assert f"node {node.node_id}: the portal lists data key {attacker_key}" in message
    assert node.data_public_key in message and "nothing was uploaded" in message
    assert not Upload.objects.exists() and not Dataset.objects.exists()
    assert not (tmp_path / "work" / "upload-state.json").exists()


def test_the_cli_refuses_to_wrap_without_its_own_chain_connection(
    phantoms, steward_files, node, tmp_path, monkeypatch
):
    monkeypatch.delenv(RPC_ENV)
    with pytest.raises(CommandError, match="--rpc-url or MEDCHAIN_UPLOAD_RPC_URL") as refused:
        _run(phantoms, steward_files, tmp_path, DjangoTestAdapter(), monkeypatch)
    assert "\n" not in str(refused.value)
    assert not Upload.objects.exists()


def test_the_cli_reports_the_upload_quota_in_one_line(
    phantoms, steward_files, node, tmp_path, monkeypatch, settings
):
    settings.DATASET_UPLOAD_QUOTA_BYTES = 1024
    with pytest.raises(CommandError, match="over its quota of 1.0 KiB") as refused:
        _run(phantoms, steward_files, tmp_path, DjangoTestAdapter(), monkeypatch)
    assert "\n" not in str(refused.value)
    assert not Upload.objects.exists()


def test_the_uid_secret_is_the_governance_keys_and_a_steward_without_it_is_told_how(
    datasets_chain, phantoms, steward, consortium, tmp_path, monkeypatch
):
    from eth_account import Account as EthAccount

    from chain import uid_secret

    # The admin's one-off: the file is SHA-256 of the governance key's EIP-712 signature,
    # the same bytes a wallet's eth_signTypedData_v4 gives (RFC 6979: deterministic).
    keystore = tmp_path / "governance.json"
    write_keystore(keystore, consortium[0].key, "pw", kdf="pbkdf2", iterations=1024)
    (tmp_path / "pw").write_text("pw\n")
    call_command(
        "uid_secret",
        keystore=str(keystore),
        password_file=str(tmp_path / "pw"),
        out=str(tmp_path / "uid-secret.bin"),
        stdout=io.StringIO(),
    )
    typed = uid_secret.typed_data(consortium[0].address)
    signed = EthAccount.sign_typed_data(consortium[0].key, full_message=typed)
    expected = hashlib.sha256(bytes(signed.signature)).digest()
    assert (
        (tmp_path / "uid-secret.bin").read_bytes()
        == expected
        == uid_secret.derive(consortium[0].key)
    )
    assert uid_secret.derive(consortium[1].key) != expected  # one per member
    with pytest.raises(CommandError, match="keep the one you have"):
        call_command(
            "uid_secret",
            keystore=str(keystore),
            password_file=str(tmp_path / "pw"),
            out=str(tmp_path / "uid-secret.bin"),
        )

    # A steward's delegate key cannot derive it: the CLI refuses in one line, saying how.
    with pytest.raises(CommandError) as refused:
        _run_as_steward(phantoms, steward, tmp_path, monkeypatch, uid_secret=False)
    message = str(refused.value)
    assert "give --uid-secret-file" in message and "manage.py uid_secret" in message
    assert "\n" not in message and not Upload.objects.exists()
