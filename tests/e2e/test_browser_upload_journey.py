"""A steward of the demo finishes an upload without a wallet, in Debian's chromium.

The page says at once that no wallet is there and offers the demo keystore; the UID secret
is explained and derived (by the demo keystore here, by the governance wallet for an admin:
the same bytes, chain/uid_secret.py); an error shows beside the button pressed; a reload
keeps the typed fields and says that files must be chosen again. The chain is read through
the portal's public RPC URL, served here from the test chain.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.test_browser_dataset import (  # noqa: F401  (fixtures)
    _node,
    _sign_in_steward,
    _steward,
    browser_vendor_files,
    chain_record,
)
from training.ingest.dataset import package_dataset
from training.ingest.phantoms import write_ct_dataset

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _serve_rpc(page: Any) -> None:
    """Answer the page's JSON-RPC reads (eth_chainId, eth_call) from the test chain."""
    from portal.core import chain as portal_chain

    def answer(route: Any) -> None:
        w3 = portal_chain.client().w3
        call = json.loads(route.request.post_data)
        if call["method"] == "eth_chainId":
            result = hex(w3.eth.chain_id)
        else:
            to = call["params"][0]
            result = "0x" + bytes(w3.eth.call({"to": to["to"], "data": to["data"]})).hex()
        route.fulfill(json={"jsonrpc": "2.0", "id": call["id"], "result": result})

    page.route("**/test-public-rpc/", answer)


def test_a_demo_steward_without_a_wallet_finishes_an_upload(
    browser_vendor_files,  # noqa: F811
    consortium,
    datasets_chain,
    chain_record,  # noqa: F811
    browser_chromium,
    browser_persona,
    live_server,
    settings,
    tmp_path,
):
    from chain import uid_secret
    from portal.consortium.models import Member
    from portal.datasets.models import Dataset

    # Same origin as the portal, so the page's Content-Security-Policy admits it.
    settings.CHAIN_PUBLIC_RPC_URL = f"{live_server.url}/test-public-rpc/"
    mary = Member.objects.get(governance_address=consortium[0].address)
    _steward(mary)
    _node(mary, tmp_path / "node", "mary-gpu-1")
    source = tmp_path / "dicom"
    annotations = write_ct_dataset(source, profile="hospital-a", count=3, seed=7, rows=64, cols=64)
    secret = uid_secret.derive(consortium[0].key)
    fingerprint = hashlib.sha256(secret).hexdigest()[:8]

    context = browser_chromium.new_context(base_url=live_server.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The page logs each refusal it shows (console.error); what must not happen is a script
    # error or a Content-Security-Policy violation.
    page.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    _serve_rpc(page)
    _sign_in_steward(page, "/datasets/upload/")

    # Before anything is filled in: no wallet, so the demo keystore is offered and ticked.
    expect(page.get_by_test_id("wallet-state")).to_contain_text("No browser wallet found")
    expect(page.get_by_label("Sign with the demo keystore")).to_be_checked()
    button = page.get_by_role("button", name="De-identify, encrypt, sign and upload")
    button.click()
    error = page.get_by_test_id("upload-error")
    expect(error).to_contain_text("choose your hospital's UID secret file, or derive the secret")
    assert error.bounding_box()["y"] - button.bounding_box()["y"] < 120  # beside the button

    # The secret, from the demo keystore; the same bytes the governance key derives.
    page.get_by_role("button", name="Use the demo keystore's secret").click()
    expect(page.get_by_test_id("uid-secret-state")).to_contain_text(f"fingerprint {fingerprint}")
    expect(page.get_by_role("button", name="Save it as a file for your stewards")).to_be_visible()

    # A reload keeps what was typed, and says the files must be chosen again.
    page.get_by_label("Title").fill("Demo liver CT")
    page.get_by_label("DICOM files").set_input_files(sorted(source.glob("*.dcm")))
    page.reload()
    expect(page.get_by_label("Title")).to_have_value("Demo liver CT")
    expect(page.get_by_test_id("reload-note")).to_contain_text("choose the files again")
    assert page.locator("#dicom-files").evaluate("el => el.files.length") == 0
    page.get_by_role("button", name="Use the demo keystore's secret").click()
    expect(page.get_by_test_id("uid-secret-state")).to_contain_text(fingerprint)

    page.get_by_label("DICOM files").set_input_files(sorted(source.glob("*.dcm")))
    page.get_by_label("Annotation file (JSON)").set_input_files(annotations)
    button.click()
    status = page.locator("#upload-status")
    expect(status).to_have_attribute("data-kind", "done", timeout=120_000)
    expect(status).to_contain_text("Uploaded and anchored: version 1")
    expect(error).to_be_hidden()
    assert errors == [], errors

    # The UIDs were replaced under the member's secret: the re-keyed annotations hash as the
    # CLI's do with the derived secret.
    dataset = Dataset.objects.get(title="Demo liver CT")
    version = dataset.versions.get()
    assert version.signer_address == consortium[0].address  # the demo governance keystore
    cli = package_dataset(
        source, annotations, tmp_path / "cli", dataset_id=str(dataset.pk), uid_secret=secret
    )
    assert version.manifest["annotations"] == cli.manifest["annotations"]

    # An admin whose wallet holds the governance key derives the very same secret.
    admin = browser_persona("admin", consortium[0].key)
    admin.page.route("**/test-public-rpc/", lambda route: route.abort())
    _sign_in_steward(admin.page, "/datasets/upload/")
    expect(admin.page.get_by_test_id("wallet-state")).to_contain_text(
        f"Wallet connected: {consortium[0].address}, St. Mary's Hospital's governance key"
    )
    admin.page.get_by_role("button", name="Derive it with the governance wallet").click()
    expect(admin.page.get_by_test_id("uid-secret-state")).to_contain_text(
        f"derived by the governance wallet (fingerprint {fingerprint})"
    )
    assert [t["primaryType"] for t in admin.signed] == ["UidSecret"]
    assert admin.errors == [], admin.errors
