"""The browser dataset upload, driven in Debian's chromium against the live server.

1. Parity: the browser's de-identification (our training/ code under Pyodide) gives
   byte-identical output, and identical refusal reasons, to the CLI's
   ``training.ingest.dicom_ingest.ingest_file`` on phantoms and pydicom's own samples.
2. The browser's WebCrypto records (around chunk boundaries) and wrapped keys open
   with ``training.crypto``, the code the CLI and the nodes run.
3. The whole page: pick files, de-identify, encrypt, sign with the injected test
   wallet, upload, commit; the dataset is anchored and in the catalogue, and a node's
   private key opens what the browser uploaded into exactly what the CLI packages.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.training.ingest import hostile
from training.crypto import (
    CHUNK_SIZE,
    ChunkInfo,
    WrappedKey,
    chunk_associated_data,
    decrypt_records,
    generate_node_keypair,
    unwrap_key,
)
from training.ingest.dataset import chunk_file_name, open_package, package_dataset
from training.ingest.dicom_ingest import IngestRefused, ingest_file
from training.ingest.dicom_scan import MAX_NESTING_DEPTH
from training.ingest.phantoms import write_ct_dataset

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "portal" / "static" / "vendor"
UID_SECRET = b"browser-parity-secret-0123456789"
STEWARD_PASSWORD = "mary-steward-pass-2024"
NODE_PASSWORD = "node-pass"
# Shipped inside the pydicom wheel (get_testdata_files only lists local files for these
# names): CT and MR in several transfer syntaxes, and files refused for their SOP class.
SAMPLE_NAMES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",
    "examples_overlay.dcm",
    "rtdose.dcm",
    "SC_rgb_small_odd.dcm",
    "MR_truncated.dcm",
    "no_meta.dcm",
    "badVR.dcm",
]
JS_B64 = """
const fromB64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const toB64 = (bytes) => {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
};
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def browser_vendor_files() -> None:
    """The static build (`make static`) must be there and copy the current training/ code."""
    bundle = VENDOR / "medchain-py" / "bundle.json"
    if not bundle.exists() or not (VENDOR / "pyodide" / "pyodide.mjs").exists():
        pytest.fail("portal/static/vendor/ is missing: run `make static`", pytrace=False)
    for name in (
        "deid.py",
        "deid_profile.json",
        "dicom_ingest.py",
        "dicom_fast.py",
        "dicom_scan.py",
        "decodable.py",
        "annotations.py",
    ):
        copied = (VENDOR / "medchain-py" / "training" / "ingest" / name).read_bytes()
        if copied != (ROOT / "training" / "ingest" / name).read_bytes():
            pytest.fail(
                f"portal/static/vendor/ holds a stale training/ingest/{name}: run `make static`"
            )


def _samples() -> list[Path]:
    from pydicom.data import get_testdata_files

    found = []
    for name in SAMPLE_NAMES:
        matches = [Path(p) for p in get_testdata_files(name) if Path(p).name == name]
        assert matches, f"{name} is not among pydicom's bundled test files"
        found.append(matches[0])
    return found


def _cli(path: Path) -> dict[str, Any]:
    try:
        result = ingest_file(path, uid_secret=UID_SECRET)
    except IngestRefused as exc:
        return {"ok": False, "reason": exc.reason}
    return {"ok": True, "data": result.data, "new": result.sop_uid_new}


def _steward(member: Any) -> Any:
    """The member's data steward (no second factor: stewards sign in with a password)."""
    from portal.consortium import services
    from portal.consortium.models import Staff

    return services.staff_create(
        member=member,
        username="mary-steward",
        password=STEWARD_PASSWORD,
        email="steward@mary.example",
        role=Staff.Role.STEWARD,
    ).user


def _node(member: Any, folder: Path, label: str) -> tuple[Any, Any]:
    """A training node of `member` registered with a fresh keystore: (node, keystore)."""
    from portal.nodes import services
    from portal.nodes.agent.keystore import NodeKeystore

    keys = NodeKeystore.create(folder, NODE_PASSWORD)
    node = services.node_register(
        member=member,
        node_id=keys.identity.node_id,
        signer_address=keys.identity.signer_address,
        data_public_key=keys.identity.data_public_key,
        label=label,
    )
    return node, keys


def _sign_in_steward(page: Any, next_url: str) -> None:
    page.goto(f"/accounts/login/?next={next_url}")
    page.get_by_label("Username").fill("mary-steward")
    page.get_by_label("Password").fill(STEWARD_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_browser_deidentification_is_byte_identical_to_the_cli(
    browser_vendor_files, browser_chromium, live_server, tmp_path
):
    import pydicom

    write_ct_dataset(tmp_path / "ph", profile="hospital-b", count=3, seed=11, rows=64, cols=64)
    deflated = pydicom.dcmread(tmp_path / "ph" / "slice_0000.dcm")
    deflated.SOPInstanceUID = "1.2.826.0.1.3680043.10.998.77"
    deflated.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    deflated.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)  # inflated by ingest
    # Hostile files end as the same refusal under Pyodide's smaller stack (docs/ingest.md).
    first = tmp_path / "ph" / "slice_0000.dcm"
    deep = hostile.encode(hostile.with_private_sequence(pydicom.dcmread(first)))
    (tmp_path / "deep.dcm").write_bytes(hostile.nested(deep, 40_000))
    (tmp_path / "edge.dcm").write_bytes(hostile.nested(deep, MAX_NESTING_DEPTH))  # accepted
    bomb = hostile.deflate_bomb(pydicom.dcmread(first), b"\x00", 1 << 30)
    (tmp_path / "bomb.dcm").write_bytes(bomb)
    extra = [tmp_path / name for name in ("deflated.dcm", "deep.dcm", "edge.dcm", "bomb.dcm")]
    files = sorted((tmp_path / "ph").glob("*.dcm")) + extra + _samples()
    page = browser_chromium.new_page(base_url=live_server.url)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/accounts/login/")
    out = page.evaluate(
        """async ([files, secret]) => {"""
        + JS_B64
        + """
          const { loadIngestEngine } = await import("/static/js/pyodide-ingest.js");
          const engine = await loadIngestEngine();
          const out = [];
          for (const data of files) {
            const r = engine.ingest(fromB64(data), fromB64(secret));
            out.push(r.ok ? { ok: true, data: toB64(r.data), new: r.sopUidNew }
                          : { ok: false, reason: r.reason });
          }
          return out;
        }""",
        [[_b64(p.read_bytes()) for p in files], _b64(UID_SECRET)],
    )
    ingested = 0
    for path, browser in zip(files, out, strict=True):
        cli = _cli(path)
        if not cli["ok"]:
            assert browser == cli, f"{path.name}: refusals differ"
            continue
        ingested += 1
        data = base64.b64decode(browser["data"])
        assert browser["new"] == cli["new"], path.name
        assert data == cli["data"], f"{path.name}: the browser's bytes differ from the CLI's"
        # ...and so element for element (the same check a reader of the files would make).
        ours = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
        theirs = pydicom.dcmread(pydicom.filebase.DicomBytesIO(cli["data"]))
        assert [(e.tag, e.VR, e.value) for e in ours.iterall()] == [
            (e.tag, e.VR, e.value) for e in theirs.iterall()
        ]
    # phantoms, one deflated + CT/MR samples; refusals (compressed and big endian among them)
    assert ingested >= 3 + 2 + 4 and len(files) - ingested >= 2
    assert errors == []


def test_browser_records_and_wrapped_keys_open_in_python(
    browser_vendor_files, browser_chromium, live_server
):
    key = bytes(range(32))
    node_private, node_public = generate_node_keypair()
    dataset_id = str(uuid.uuid4())
    node_id = "0x" + "ab" * 32
    sizes = [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 5]
    page = browser_chromium.new_page(base_url=live_server.url)
    page.goto("/accounts/login/")
    out = page.evaluate(
        """async ([key, pub, datasetId, nodeId, sizes]) => {"""
        + JS_B64
        + """
          const c = await import("/static/js/medchain-crypto.js");
          const { IngestPool } = await import("/static/js/ingest-pool.js");
          const pool = new IngestPool(2);
          const dataKey = await c.importDataKey(fromB64(key));
          const streams = [];
          // Sealed on this thread, then in the upload page's workers (its chunk buffers reused).
          const here = {};
          const workers = {
            seal: (i, f, p) => pool.seal(dataKey, datasetId, i, f, p),
            inFlight: 3,
          };
          const runs = [...sizes.map((s) => [here, s]), ...sizes.map((s) => [workers, s])];
          for (const [sealer, size] of runs) {
            const plain = new Uint8Array(size);
            for (let i = 0; i < size; i++) plain[i] = (i * 7) % 251;
            const records = [];
            const enc = new c.ChunkEncryptor(dataKey, datasetId,
                                             async (r) => { records.push(toB64(r)); }, sealer);
            // Uneven writes, as the container writer makes them.
            const step = 300001;
            for (let at = 0; at < size; at += step) await enc.write(plain.subarray(at, at + step));
            const chunks = await enc.close();
            streams.push({ records, chunks, size: enc.size });
          }
          pool.terminate();
          const wrapped = await c.wrapKey(fromB64(key), fromB64(pub), datasetId, nodeId);
          const ad = c.toHex(c.chunkAssociatedData("ds-1", 2, true));
          return { streams, wrapped: toB64(wrapped), ad };
        }""",
        [_b64(key), _b64(node_public), dataset_id, node_id, sizes],
    )
    # docs/encryption.md's test vector for the associated data.
    assert out["ad"] == "4d4345310004" + b"ds-1".hex() + "0000000000000002" + "01"
    assert bytes.fromhex(out["ad"]) == chunk_associated_data(dataset_id="ds-1", index=2, final=True)
    for size, stream in zip(sizes * 2, out["streams"], strict=True):
        records = [base64.b64decode(r) for r in stream["records"]]
        chunks = [ChunkInfo(**c) for c in stream["chunks"]]
        assert len(records) == max(1, -(-size // CHUNK_SIZE)), size
        assert [hashlib.sha256(r).hexdigest() for r in records] == [c.sha256 for c in chunks]
        plain = b"".join(decrypt_records(records, key=key, dataset_id=dataset_id, chunks=chunks))
        assert plain == bytes((i * 7) % 251 for i in range(size)) and stream["size"] == size
    wrapped = WrappedKey.from_bytes(base64.b64decode(out["wrapped"]))
    assert unwrap_key(wrapped, node_private, dataset_id=dataset_id, node_id=node_id) == key


@pytest.fixture
def chain_record(datasets_chain, chain_client, settings, tmp_path: Path) -> Path:
    """The deployment record the upload page reads node keys at (as deploy_contracts writes it)."""
    from chain.deployment import DeploymentRecord
    from portal.core import chain as portal_chain

    path = tmp_path / "chain-deployment.json"
    DeploymentRecord(
        chain_id=chain_client.chain_id,
        registry=portal_chain.deployment().address,
        datasets=datasets_chain.address,
    ).write(path)
    settings.CHAIN_DEPLOYMENT_RECORD = path
    return path


def test_a_steward_uploads_a_dataset_from_the_browser(
    browser_vendor_files, consortium, datasets_chain, chain_record, browser_persona, tmp_path
):
    from rest_framework.test import APIClient

    from portal.consortium import services as consortium_services
    from portal.consortium.models import Member, Staff
    from portal.datasets.models import Dataset, Grant

    mary = Member.objects.get(governance_address=consortium[0].address)
    _steward(mary)
    node, keys = _node(mary, tmp_path / "node", "mary-gpu-1")
    source = tmp_path / "dicom"
    # Twelve 256x256 slices: two ciphertext chunks of 1 MiB.
    annotations = write_ct_dataset(source, profile="hospital-a", count=12, seed=5)
    refused_sample = next(p for p in _samples() if p.name == "rtdose.dcm")
    shutil.copy(refused_sample, source / "zz_rtdose.dcm")
    secret_file = tmp_path / "uid-secret.bin"
    secret_file.write_bytes(UID_SECRET)

    # The steward's wallet holds the member's governance key: it signs manifest and grant.
    steward = browser_persona("steward", consortium[0].key)
    page = steward.page
    _sign_in_steward(page, "/datasets/upload/")
    expect(page.get_by_role("heading", name="Upload a dataset")).to_be_visible()
    expect(page.get_by_label("mary-gpu-1")).to_be_checked()
    page.get_by_label("Title").fill("Phantom liver CT")
    page.get_by_label("DICOM files").set_input_files(sorted(source.glob("*.dcm")))
    page.get_by_label("Annotation file (JSON)").set_input_files(annotations)
    page.get_by_label("UID secret file").set_input_files(secret_file)
    button = page.get_by_role("button", name="De-identify, encrypt, sign and upload")
    expect(button).to_be_enabled()
    status = page.locator("#upload-status")

    # By default a refused file stops everything before anything is signed or sent.
    button.click()
    expect(status).to_have_attribute("data-kind", "error", timeout=60_000)
    expect(status).to_contain_text("1 file(s) refused, nothing was uploaded")
    expect(page.locator("#refusals")).to_contain_text("zz_rtdose.dcm")
    assert steward.signed == [] and not Dataset.objects.exists()

    # The connection drops on the second chunk once: the page retries it.
    dropped: list[str] = []

    def drop_once(route: Any) -> None:
        if dropped:
            route.continue_()
        else:
            dropped.append(route.request.url)
            route.abort("connectionreset")

    page.route("**/chunks/1/", drop_once)
    page.get_by_label("Leave refused files out").check()
    button.click()
    expect(status).to_have_attribute("data-kind", "done", timeout=60_000)
    expect(status).to_contain_text("Uploaded and anchored: version 1")
    expect(page.locator("#refusals")).to_contain_text("zz_rtdose.dcm")
    expect(page.locator("#refusals")).to_contain_text("unsupported SOP class RT Dose Storage")
    expect(page.get_by_test_id("upload-result")).to_contain_text("St. Mary's Hospital")
    steward.screenshot("dataset-upload-done.png")
    assert steward.errors == [], steward.errors
    assert [t["primaryType"] for t in steward.signed] == ["AnchorManifest", "RecordGrant"]
    assert len(dropped) == 1

    # Anchored on chain, with the node's grant, and in every member's catalogue.
    dataset = Dataset.objects.get(title="Phantom liver CT")
    version = dataset.versions.get(number=1)
    assert version.state == "anchored"
    assert datasets_chain.version_of(dataset.chain_id, version.manifest_sha256) == 1
    assert datasets_chain.grant_of(dataset.chain_id, node.node_id).active
    city_admin = consortium_services.staff_create(
        member=Member.objects.get(governance_address=consortium[1].address),
        username="city-viewer",
        password="city-viewer-pass-2024",
        email="v@city.example",
        role=Staff.Role.ADMIN,
    ).user
    api = APIClient()
    api.force_authenticate(city_admin)
    catalogue = api.get("/api/v1/datasets/").json()["results"]
    assert [(e["id"], e["instances"], e["modality"]) for e in catalogue] == [
        (str(dataset.id), 12, "CT")
    ]

    # The node's key opens what the browser uploaded: exactly the CLI's container.
    from django.core.files.storage import default_storage

    grant = Grant.objects.get(version=version, node=node)
    raw_private = keys.data_private_key.private_bytes_raw()
    data_key = unwrap_key(
        WrappedKey.from_bytes(bytes.fromhex(grant.wrapped_key[2:])),
        raw_private,
        dataset_id=str(dataset.id),
        node_id=node.node_id,
    )
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    for index in range(version.chunk_count):
        with default_storage.open(version.chunk_path(index), "rb") as f:
            (fetched / chunk_file_name(index)).write_bytes(f.read())
    browser_records = list(
        open_package(
            fetched, data_key=data_key, dataset_id=str(dataset.id), manifest=version.manifest
        )
    )
    cli = package_dataset(
        source,
        annotations,
        tmp_path / "cli-pkg",
        dataset_id=str(dataset.id),
        uid_secret=UID_SECRET,
        skip_refused=True,
    )
    assert [r.reason for r in cli.refused] == [
        page.locator("#refusals tbody td").nth(1).inner_text()
    ]
    cli_records = list(
        open_package(
            tmp_path / "cli-pkg",
            data_key=cli.data_key,
            dataset_id=cli.dataset_id,
            manifest=cli.manifest,
        )
    )
    assert [n for n, _ in browser_records] == [n for n, _ in cli_records]
    assert browser_records == cli_records
    # Same manifest but for the chunk hashes (random nonces).
    strip = {"chunks"}
    assert {k: v for k, v in version.manifest.items() if k not in strip} == {
        k: v for k, v in cli.manifest.items() if k not in strip
    }
    assert [c["size"] for c in version.manifest["chunks"]] == [c.size for c in cli.chunks]
    assert version.chunk_count == 2


def test_only_an_admin_or_steward_of_an_active_member_opens_the_upload_page(
    consortium, clinician, member_admin, client
):
    from portal.consortium.models import Member

    assert client.get("/datasets/upload/").url.startswith("/accounts/login/")
    client.force_login(clinician)
    assert client.get("/datasets/upload/").status_code == 403
    client.force_login(member_admin)  # an admin proves the second factor first
    assert client.get("/datasets/upload/").url.startswith("/accounts/two-factor/")
    client.force_login(_steward(Member.objects.get(governance_address=consortium[0].address)))
    page = client.get("/datasets/upload/")
    assert page.status_code == 200 and b'id="dataset-upload"' in page.content
