from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_files

from tests.examples import examples
from training.ingest.deid import INGESTIBLE_SOP_CLASSES
from training.ingest.dicom_ingest import IngestRefused, ingest_file
from training.ingest.phantoms import write_ct_dataset

SECRET = b"owner secret"
# Only files shipped inside the wheel: get_testdata_file(name) would hit the network.
SAMPLES = sorted(get_testdata_files())
NON_IMAGE_CLASSES = {
    "rtplan.dcm": "RT Plan Storage",
    "rtdose.dcm": "RT Dose Storage",
    "waveform_ecg.dcm": "12-lead ECG Waveform Storage",
    "test-SR.dcm": "Comprehensive SR Storage",
}


def _id(path: str) -> str:
    return os.path.relpath(path, os.path.commonpath(SAMPLES))


def test_the_wheel_ships_enough_samples():
    assert len(SAMPLES) > 150
    assert any(p.endswith("CT_small.dcm") for p in SAMPLES)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", SAMPLES, ids=_id)
def test_it_ingests_or_refuses_each_pydicom_sample(path):
    try:
        result = ingest_file(path, uid_secret=SECRET)
    except IngestRefused as refused:
        assert refused.reason
        name = Path(path).name
        if name in NON_IMAGE_CLASSES:
            assert f"unsupported SOP class {NON_IMAGE_CLASSES[name]}" in refused.reason
        return
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(result.data))
    original = pydicom.dcmread(path)
    assert out.SOPClassUID in INGESTIBLE_SOP_CLASSES
    assert result.modality in ("CT", "MR")
    assert (result.rows, result.cols) == (original.Rows, original.Columns)
    assert out.SOPInstanceUID == result.sop_uid_new != original.SOPInstanceUID
    assert out.PatientIdentityRemoved == "YES"
    assert not any(elem.tag.is_private for elem in out.iterall())
    # Pixel data is passed through as bytes, never decoded or re-encoded.
    assert out.PixelData == original.PixelData
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_it_ingests_the_ct_sample_and_refuses_a_secondary_capture():
    ct = next(p for p in SAMPLES if p.endswith("CT_small.dcm"))
    result = ingest_file(ct, uid_secret=SECRET)
    assert (result.modality, result.rows, result.cols) == ("CT", 128, 128)
    assert result.sop_uid_new.startswith("2.25.")
    sc = next(p for p in SAMPLES if p.endswith("SC_rgb_small_odd.dcm"))
    with pytest.raises(IngestRefused, match="unsupported SOP class Secondary Capture"):
        ingest_file(sc, uid_secret=SECRET)


@pytest.mark.parametrize("size", [32, 256], ids=["in-memory", "deferred"])
def test_it_refuses_a_truncated_file(tmp_path, size):
    write_ct_dataset(tmp_path, profile="hospital-a", count=1, seed=0, rows=size, cols=size)
    path = tmp_path / "slice_0000.dcm"
    path.write_bytes(path.read_bytes()[:-100])  # Pixel Data is the last element
    with pytest.raises(IngestRefused, match="truncated"):
        ingest_file(path, uid_secret=SECRET)


def test_it_refuses_a_non_dicom_file_and_a_missing_one(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Patient: Jane Doe")
    with pytest.raises(IngestRefused, match="not a DICOM Part 10 file"):
        ingest_file(text, uid_secret=SECRET)
    with pytest.raises(IngestRefused, match="cannot read"):
        ingest_file(tmp_path / "missing.dcm", uid_secret=SECRET)


def test_it_does_not_import_torch():
    code = (
        "import sys, training.ingest.dicom_ingest, training.crypto, training.ingest.annotations, "
        "training.ingest.phantoms; sys.exit('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=root).returncode == 0


@pytest.fixture(scope="module")
def phantom_bytes(tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("fuzz")
    write_ct_dataset(out, profile="hospital-c", count=1, seed=0, rows=16, cols=16)
    return (out / "slice_0000.dcm").read_bytes()


@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_corrupted_header_is_ingested_or_refused_never_an_error(phantom_bytes, tmp_path, data):
    raw = bytearray(phantom_bytes)
    header_end = len(raw) - 16 * 16 * 2
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(132, header_end - 1))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.sampled_from([len(raw), header_end, header_end // 2]))
    path = tmp_path / "fuzzed.dcm"
    path.write_bytes(bytes(raw[:cut]))
    try:
        ingest_file(path, uid_secret=SECRET)
    except IngestRefused as refused:
        assert refused.reason
