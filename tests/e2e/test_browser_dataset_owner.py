"""The dataset owner's page in Debian's chromium against the live server: revoking one
version's grant and withdrawing, signed by the wallet; a signature the wallet rejects
changes nothing; the upload page wraps the data key to no node key the chain does not
register."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_dataset import (  # noqa: F401  (fixtures)
    UID_SECRET,
    _node,
    _sign_in_steward,
    _steward,
    browser_vendor_files,
    chain_record,
)
from training.ingest.dataset import chunk_file_name, package_dataset
from training.ingest.phantoms import write_ct_dataset

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

# What a wallet does when its user presses "Reject": EIP-1193 error 4001.
JS_WALLET_REJECTS = """() => {
  const request = window.ethereum.request;
  window.ethereum.request = async (args) => {
    if (args.method === "eth_signTypedData_v4") {
      const err = new Error("User rejected the request.");
      err.code = 4001;
      throw err;
    }
    return request(args);
  };
}"""


def _two_version_dataset(user: Any, member: Any, nodes: list[Any], tmp_path: Path) -> Any:
    """A dataset made through the upload services, signed by the demo keystore:
    v1 granted to every node in `nodes`, v2 to the first only (replacing its v1 grant)."""
    from portal.datasets import services
    from portal.datasets.models import Dataset
    from training.crypto import wrap_key

    source = tmp_path / "owner-dicom"
    annotations = write_ct_dataset(source, profile="hospital-a", count=3, seed=3, rows=64, cols=64)
    dataset_id = uuid.uuid4()
    for number, granted in ((1, nodes), (2, nodes[:1])):
        folder = tmp_path / f"owner-pkg-v{number}"
        package = package_dataset(
            source, annotations, folder, dataset_id=str(dataset_id), uid_secret=UID_SECRET
        )
        grants = [
            services.GrantRequest(
                node=n,
                wrapped_key=wrap_key(
                    package.data_key,
                    bytes.fromhex(n.data_public_key[2:]),
                    dataset_id=str(dataset_id),
                    node_id=n.node_id,
                ).to_bytes(),
            )
            for n in granted
        ]
        upload, _ = services.upload_create(
            user=user,
            member=member,
            dataset_id=dataset_id,
            title="Phantom owner CT",
            manifest=package.manifest,
            signer=None,
            signature=None,
            grants=grants,
        )
        for index in range(upload.expected_chunks):
            data = (folder / chunk_file_name(index)).read_bytes()
            services.upload_chunk_store(upload=upload, index=index, data=data)
        assert services.upload_commit(upload=upload).error == ""
    return Dataset.objects.get(pk=dataset_id)


def _owner_page_setup(consortium: Any, tmp_path: Path) -> tuple[Any, Any, Any]:
    """(dataset, the owner's node, another member's node) for St. Mary's steward."""
    from portal.consortium.models import Member

    mary = Member.objects.get(governance_address=consortium[0].address)
    city = Member.objects.get(governance_address=consortium[1].address)
    steward = _steward(mary)
    own, _ = _node(mary, tmp_path / "own-node", "mary-gpu-1")
    server, _ = _node(city, tmp_path / "server-node", "city-gpu-1")
    return _two_version_dataset(steward, mary, [own, server], tmp_path), own, server


def _grant_row(page: Any, version: int, node: Any) -> Any:
    return page.get_by_test_id(f"grant-v{version}-{node.node_id}")


def test_a_steward_revokes_one_versions_grant_and_withdraws_with_the_wallet(
    consortium, datasets_chain, browser_persona, tmp_path
):
    from rest_framework.test import APIClient

    from portal.nodes.services import node_token_issue

    dataset, own, server = _owner_page_setup(consortium, tmp_path)
    steward = browser_persona("steward", consortium[0].key)
    page = steward.page
    _sign_in_steward(page, f"/datasets/{dataset.pk}/")
    expect(page.get_by_role("heading", name="Phantom owner CT")).to_be_visible()
    expect(_grant_row(page, 1, own)).to_contain_text("Replaced by a newer grant")
    expect(_grant_row(page, 1, server)).to_contain_text("server")
    expect(_grant_row(page, 2, own)).to_contain_text("own")

    # Revoke v1's grant to the other member's node; v2's grant to the owner's node stays.
    row = _grant_row(page, 1, server)
    row.get_by_role("button", name="Revoke").click()
    expect(page.locator(".messages")).to_contain_text(
        "The grant of v1 to node city-gpu-1 is revoked"
    )
    expect(_grant_row(page, 1, server).get_by_test_id("grant-status")).to_contain_text("Revoked")
    expect(_grant_row(page, 2, own).get_by_test_id("grant-status")).to_contain_text("Active")
    assert [t["primaryType"] for t in steward.signed] == ["RevokeGrant"]
    assert steward.signed[0]["message"]["nodeId"] == server.node_id
    assert not datasets_chain.grant_of(dataset.chain_id, server.node_id).active
    assert datasets_chain.grant_of(dataset.chain_id, own.node_id).active
    steward.screenshot("dataset-owner-revoked.png")

    # Withdraw the dataset: on chain, shown, and the API releases nothing more.
    node_api = APIClient()
    node_api.credentials(HTTP_AUTHORIZATION=f"Token {node_token_issue(node=own)}")
    chunk = f"/api/v1/datasets/{dataset.pk}/node/chunks/0/?version=2"
    released = node_api.get(chunk)
    assert released.status_code == 200
    released.close()
    # It asks first, naming the consequence; Cancel changes nothing.
    page.get_by_role("button", name="Withdraw dataset").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("cannot be undone")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert [t["primaryType"] for t in steward.signed] == ["RevokeGrant"]
    # Going ahead takes the dataset's name, typed.
    page.get_by_role("button", name="Withdraw dataset").click()
    go = dialog.get_by_role("button", name="Withdraw this dataset")
    expect(go).to_be_disabled()
    dialog.get_by_role("textbox").fill("Phantom owner")
    expect(go).to_be_disabled()
    dialog.get_by_role("textbox").fill("Phantom owner CT")
    steward.screenshot("dataset-owner-withdraw-confirm.png")
    go.click()
    expect(page.locator(".messages")).to_contain_text("Phantom owner CT is withdrawn, on chain.")
    expect(page.get_by_test_id("dataset-status")).to_contain_text("Withdrawn")
    expect(page.get_by_test_id("dataset-withdraw")).to_contain_text("is withdrawn")
    expect(page.get_by_role("button", name="Withdraw dataset")).to_have_count(0)
    steward.screenshot("dataset-owner-withdrawn.png")
    assert [t["primaryType"] for t in steward.signed] == ["RevokeGrant", "WithdrawDataset"]
    assert datasets_chain.dataset(dataset.chain_id).withdrawn
    dataset.refresh_from_db()
    assert dataset.status == "withdrawn" and dataset.withdrawn_tx
    for url in (chunk, f"/api/v1/datasets/{dataset.pk}/node/manifest/"):
        refused = node_api.get(url)
        assert refused.status_code == 403 and "Withdrawn" in refused.json()["error"]
    assert steward.errors == [], steward.errors


def test_a_signature_the_wallet_rejects_changes_nothing(
    consortium, datasets_chain, browser_persona, tmp_path
):
    from portal.datasets.models import Grant

    dataset, own, server = _owner_page_setup(consortium, tmp_path)
    steward = browser_persona("steward", consortium[0].key)
    page = steward.page
    _sign_in_steward(page, f"/datasets/{dataset.pk}/")
    expect(page.get_by_role("heading", name="Phantom owner CT")).to_be_visible()
    page.evaluate(JS_WALLET_REJECTS)
    declined = "You declined the request in your wallet; nothing was sent."

    row = _grant_row(page, 2, own)
    row.get_by_role("button", name="Revoke").click()
    status = page.get_by_test_id("wallet-status")
    expect(status).to_have_attribute("data-kind", "error")
    expect(status).to_contain_text(declined)
    expect(row.get_by_role("button", name="Revoke")).to_be_enabled()

    withdraw = page.get_by_test_id("dataset-withdraw")
    withdraw.get_by_role("button", name="Withdraw dataset").click()
    page.get_by_role("dialog").get_by_role("textbox").fill("Phantom owner CT")
    page.get_by_role("dialog").get_by_role("button", name="Withdraw this dataset").click()
    expect(status).to_contain_text(declined)

    assert steward.signed == [] and steward.errors == []
    expect(page.locator(".messages")).to_have_count(0)
    assert datasets_chain.grant_of(dataset.chain_id, own.node_id).active
    assert not datasets_chain.dataset(dataset.chain_id).withdrawn
    grant = Grant.objects.get(version__dataset=dataset, version__number=2, node=own)
    assert grant.state == Grant.State.ACTIVE
    dataset.refresh_from_db()
    assert dataset.status == "active"
    page.reload()
    expect(_grant_row(page, 2, own).get_by_test_id("grant-status")).to_contain_text("Active")
    expect(page.get_by_test_id("dataset-status")).to_contain_text("Active")


def test_the_page_wraps_the_data_key_to_no_node_key_the_chain_does_not_register(
    browser_vendor_files,  # noqa: F811
    consortium,
    datasets_chain,
    chain_record,  # noqa: F811
    browser_persona,
    tmp_path,
):
    """A compromised portal lists its own X25519 key for St. Mary's node, to read the data."""
    from portal.consortium.models import Member
    from portal.datasets.models import Dataset, Upload
    from portal.nodes.models import Node

    mary = Member.objects.get(governance_address=consortium[0].address)
    _steward(mary)
    node, _keys = _node(mary, tmp_path / "node", "mary-gpu-1")
    attacker_key = "0x" + "66" * 32
    Node.objects.filter(pk=node.pk).update(data_public_key=attacker_key)
    source = tmp_path / "dicom"
    annotations = write_ct_dataset(source, profile="hospital-a", count=2, seed=5, rows=64, cols=64)
    secret_file = tmp_path / "uid-secret.bin"
    secret_file.write_bytes(UID_SECRET)

    def attempt(persona: Any) -> Any:
        page = persona.page
        _sign_in_steward(page, "/datasets/upload/")
        page.get_by_label("DICOM files").set_input_files(sorted(source.glob("*.dcm")))
        page.get_by_label("Annotation file (JSON)").set_input_files(annotations)
        page.get_by_label("UID secret file").set_input_files(secret_file)
        page.get_by_role("button", name="De-identify, encrypt, sign and upload").click()
        status = page.locator("#upload-status")
        expect(status).to_have_attribute("data-kind", "error", timeout=30_000)
        return status

    # The wallet reads the chain: the key there is the node's own, not the portal's.
    steward = browser_persona("steward", consortium[0].key)
    status = attempt(steward)
    expect(status).to_contain_text(f"node {node.node_id}: the portal lists data key {attacker_key}")
    expect(status).to_contain_text(f"the chain registers {node.data_public_key}")
    assert steward.signed == [] and steward.errors == []

    # A wallet that cannot read the chain, and no public RPC: the page says why it stops.
    blind = browser_persona("blind", consortium[0].key, reads_chain=False)
    status = attempt(blind)
    expect(status).to_contain_text("cannot read the nodes' keys on chain")
    expect(status).to_contain_text("configures no public RPC URL")
    assert blind.signed == []
    assert not Upload.objects.exists() and not Dataset.objects.exists()
