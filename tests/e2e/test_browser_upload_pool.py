"""The upload page's de-identification workers, in Debian's chromium against the live server.

The page de-identifies in a pool of Web Workers (static/js/ingest-pool.js), each with its own
Pyodide. An engine that cannot load is reported beside the button and nothing is sent; the
next press starts the pool afresh and the upload completes with every progress bar full.
Byte-for-byte parity of what the workers produce with the CLI's package is
tests/e2e/test_browser_dataset.py's (its upload goes through the same pool).
"""

from __future__ import annotations

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
from tests.e2e.test_browser_upload_journey import _serve_rpc
from training.ingest.phantoms import write_ct_dataset

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

FILES = 5


def _bar(page: Any, name: str) -> list[float]:
    return page.locator(f"#{name}-progress").evaluate("el => [el.value, el.max]")


def test_an_engine_that_cannot_load_stops_the_upload_beside_the_button_and_sends_nothing(
    browser_vendor_files,  # noqa: F811
    consortium,
    datasets_chain,
    chain_record,  # noqa: F811
    browser_chromium,
    live_server,
    settings,
    tmp_path,
):
    from portal.consortium.models import Member
    from portal.datasets.models import Dataset, Upload

    settings.CHAIN_PUBLIC_RPC_URL = f"{live_server.url}/test-public-rpc/"
    mary = Member.objects.get(governance_address=consortium[0].address)
    _steward(mary)
    _node(mary, tmp_path / "node", "mary-gpu-1")
    source = tmp_path / "dicom"
    annotations = write_ct_dataset(
        source, profile="hospital-a", count=FILES, seed=3, rows=64, cols=64
    )
    context = browser_chromium.new_context(base_url=live_server.url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _serve_rpc(page)
    # The workers fetch the engine's files: a portal without `make static` answers 404.
    context.route("**/vendor/medchain-py/bundle.json", lambda route: route.fulfill(status=404))
    _sign_in_steward(page, "/datasets/upload/")
    page.get_by_role("button", name="Use the demo keystore's secret").click()
    expect(page.get_by_test_id("uid-secret-state")).to_contain_text("fingerprint")
    page.get_by_label("Title").fill("Pool liver CT")
    page.get_by_label("DICOM files").set_input_files(sorted(source.glob("*.dcm")))
    page.get_by_label("Annotation file (JSON)").set_input_files(annotations)
    button = page.get_by_role("button", name="De-identify, encrypt, sign and upload")
    button.click()

    error = page.get_by_test_id("upload-error")
    expect(error).to_contain_text("the de-identification engine is not installed on this portal")
    expect(error).to_contain_text("run `make static`")
    assert error.bounding_box()["y"] - button.bounding_box()["y"] < 120  # beside the button
    expect(page.locator("#upload-status")).to_have_attribute("data-kind", "error")
    expect(button).to_be_enabled()
    assert not Upload.objects.exists() and not Dataset.objects.exists()
    assert _bar(page, "upload")[0] == 0

    # Installed again: the next press starts new workers and finishes, every bar full.
    context.unroute("**/vendor/medchain-py/bundle.json")
    button.click()
    status = page.locator("#upload-status")
    expect(status).to_have_attribute("data-kind", "done", timeout=120_000)
    expect(error).to_be_hidden()
    assert _bar(page, "deid") == [FILES, FILES]
    for name in ("encrypt", "upload"):
        value, top = _bar(page, name)
        assert value == top and value > 0, name
    version = Dataset.objects.get(title="Pool liver CT").versions.get()
    assert version.manifest["instances"] == FILES
    assert errors == [], errors
    context.close()


def test_a_chunk_a_worker_cannot_seal_stops_the_packaging_with_the_workers_reason(
    browser_vendor_files,  # noqa: F811
    browser_chromium,
    live_server,
):
    """The workers seal the container's chunks too: a refusal or a stopped worker surfaces."""
    page = browser_chromium.new_page(base_url=live_server.url)
    page.goto("/accounts/login/")
    out = page.evaluate(
        """async () => {
          const c = await import("/static/js/medchain-crypto.js");
          const { IngestPool } = await import("/static/js/ingest-pool.js");
          const pool = new IngestPool(2);
          const raw = new Uint8Array(32);
          // A key that may not encrypt: the worker's WebCrypto refuses, the writer rejects.
          const decryptOnly = await crypto.subtle.importKey(
            "raw", raw, "AES-GCM", false, ["decrypt"]);
          const enc = new c.ChunkEncryptor(decryptOnly, "ds-1", async () => {}, {
            seal: (i, f, p) => pool.seal(decryptOnly, "ds-1", i, f, p),
          });
          await enc.write(new Uint8Array(c.CHUNK_SIZE + 1));
          const refused = await enc.close().then(() => "sealed", (err) => err.message);
          // Engines stopped with chunks in hand: those chunks fail with the engine's message.
          const key = await c.importDataKey(raw);
          const pending = pool.seal(key, "ds-1", 0, true, new Uint8Array(c.CHUNK_SIZE));
          pool.terminate();
          const stopped = await pending.then(() => "sealed", (err) => err.message);
          return { refused, stopped };
        }"""
    )
    assert out["refused"] != "sealed" and out["refused"], out
    assert out["stopped"] == "the de-identification engine was stopped", out
