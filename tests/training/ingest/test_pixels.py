"""Every file ingest accepts, the node's reader decodes, to the HU pydicom computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.pixels import apply_modality_lut

from training.ingest.dicom_ingest import IngestRefused, ingest_file
from training.ingest.phantoms import PROFILES, write_ct_dataset
from training.ingest.pixels import PixelDecodeError, read_hu

SECRET = b"owner secret"
SAMPLES = sorted(p for p in get_testdata_files() if Path(p).is_file())  # inside the wheel


def _expected_hu(data: bytes) -> np.ndarray:
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    return hu.reshape(int(ds.get("NumberOfFrames") or 1), int(ds.Rows), int(ds.Columns))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_it_decodes_every_phantom_profile_to_hu(tmp_path, profile):
    write_ct_dataset(tmp_path, profile=profile, count=1, seed=5, rows=32, cols=24)
    data = ingest_file(tmp_path / "slice_0000.dcm", uid_secret=SECRET).data
    hu = read_hu(data)
    assert hu.shape == (1, 32, 24) and hu.dtype == np.float32
    np.testing.assert_array_equal(hu, _expected_hu(data))
    assert hu.min() >= -1024 and hu.max() <= 3071


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_it_decodes_every_pydicom_sample_that_ingest_accepts():
    decoded = 0
    for path in SAMPLES:
        try:
            result = ingest_file(path, uid_secret=SECRET)
        except IngestRefused:
            continue
        np.testing.assert_array_equal(read_hu(result.data), _expected_hu(result.data), path)
        decoded += 1
    assert decoded >= 10


def test_it_refuses_what_ingest_would_refuse(tmp_path):
    write_ct_dataset(tmp_path, profile="hospital-a", count=1, seed=5, rows=16, cols=16)
    ds = pydicom.dcmread(tmp_path / "slice_0000.dcm")
    ds.BitsAllocated = 13
    path = tmp_path / "odd.dcm"
    ds.save_as(path)
    with pytest.raises(PixelDecodeError, match="Bits Allocated"):
        read_hu(path)
