"""Hostile DICOM files end quickly as a refusal with a reason, in bounded memory (issue 7)."""

from __future__ import annotations

import copy
import json
import logging
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from tests.examples import examples
from tests.training.ingest import hostile
from training.ingest.decodable import EXPLICIT_VR_LITTLE_ENDIAN
from training.ingest.deid import IngestRefused
from training.ingest.dicom_ingest import ingest_file, ingest_file_pydicom
from training.ingest.dicom_scan import MAX_ELEMENTS, MAX_NESTING_DEPTH
from training.ingest.pixels import read_hu

SECRET = b"owner secret of hospital A, 32 b"
ROOT = Path(__file__).resolve().parents[3]
QUICK_S = 5.0
RSS_LIMIT_MB = 256
BOTH_PATHS = [ingest_file, ingest_file_pydicom]


def _refused(path: Path, match: str, *, ingest=ingest_file, **kwargs: int) -> str:
    started = time.monotonic()
    with pytest.raises(IngestRefused, match=match) as refused:
        ingest(path, uid_secret=SECRET, **kwargs)
    assert time.monotonic() - started < QUICK_S
    return refused.value.reason


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def ds(tmp_path: Path) -> Dataset:
    return hostile.dataset(tmp_path / "phantom")


@pytest.mark.parametrize("ingest", BOTH_PATHS)
def test_it_accepts_a_valid_deflated_ct_slice(tmp_path, ds, ingest):
    original = ds.PixelData
    path = _write(tmp_path, "deflated.dcm", hostile.deflated(ds))
    result = ingest(path, uid_secret=SECRET)
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(result.data))
    assert out.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN  # stored inflated
    assert out.PixelData == original
    assert read_hu(result.data).shape == (1, 16, 16)
    result.close()


def test_both_paths_give_the_same_bytes_for_a_deflated_slice(tmp_path, ds):
    path = _write(tmp_path, "deflated.dcm", hostile.deflated(ds))
    assert ingest_file(path, uid_secret=SECRET) == ingest_file_pydicom(path, uid_secret=SECRET)


def test_it_inflates_pydicoms_deflated_sample_and_judges_its_content(tmp_path):
    sample = pydicom.dcmread(get_testdata_file("image_dfl.dcm"))
    _refused(Path(get_testdata_file("image_dfl.dcm")), "unsupported SOP class Secondary Capture")
    sample.SOPClassUID = sample.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    sample.Modality = "CT"
    path = _write(tmp_path, "dfl-as-ct.dcm", hostile.deflated(sample))
    result = ingest_file(path, uid_secret=SECRET)
    assert (result.rows, result.cols) == (512, 512)
    assert read_hu(result.data).shape == (1, 512, 512)


def test_it_refuses_a_deflate_bomb_of_a_gibibyte_of_zeros(tmp_path, ds):
    # The body after the header inflates to 1 GiB of zeros, deflated to about a megabyte.
    path = _write(tmp_path, "bomb-zeros.dcm", hostile.deflate_bomb(ds, b"\x00", 1 << 30))
    _refused(path, "no valid VR")


def test_it_refuses_a_deflate_bomb_of_endless_small_elements(tmp_path, ds):
    empty = struct.pack("<HH2sH", 0x0009, 0x1011, b"LO", 0)
    path = _write(tmp_path, "bomb-elements.dcm", hostile.deflate_bomb(ds, empty, 1 << 30))
    _refused(path, f"more than {MAX_ELEMENTS:,} elements")


def test_it_refuses_a_deflate_bomb_whose_element_claims_a_gibibyte(tmp_path, ds):
    claim = struct.pack("<HH2sHI", 0x0009, 0x1012, b"OB", 0, 1 << 30)
    bomb = hostile.deflate_bomb(ds, claim + bytes((1 << 20) - len(claim)), 1 << 30)
    path = _write(tmp_path, "bomb-element.dcm", bomb)
    _refused(path, "exceeds 16.0 MiB")


def test_it_refuses_a_deflate_bomb_in_pixel_data_before_inflating_it(tmp_path, ds):
    claim = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, 1 << 30)
    bomb = hostile.deflate_bomb(ds, claim + bytes((1 << 20) - len(claim)), 1 << 30)
    path = _write(tmp_path, "bomb-pixels.dcm", bomb)
    _refused(path, "Pixel Data holds 1073741824 bytes but .* declare 512")


def test_it_stops_inflating_at_the_per_file_cap(tmp_path, ds):
    ds.Rows = ds.Columns = 4096  # 32 MiB of pixels, declared and present
    claim = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, 4096 * 4096 * 2)
    bomb = hostile.deflate_bomb(ds, claim + bytes((1 << 20) - len(claim)), 32 << 20)
    path = _write(tmp_path, "big-deflated.dcm", bomb)
    _refused(path, "more than the per-file cap of 8.0 MiB", max_file_bytes=8 << 20)


@pytest.mark.parametrize("ingest", BOTH_PATHS)
def test_it_refuses_headers_that_claim_huge_sizes(tmp_path, ds, ingest):
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 99999
    path = _write(tmp_path, "huge.dcm", hostile.encode(ds))
    _refused(path, "declares .* of pixel data, more than the per-file cap", ingest=ingest)


@pytest.mark.parametrize("ingest", BOTH_PATHS)
def test_it_refuses_an_element_longer_than_the_file(tmp_path, ds, ingest):
    raw = hostile.encode(ds)
    at = raw.index(struct.pack("<HH", 0x0010, 0x0010))  # Patient's Name, a short VR
    raw = raw[:at] + struct.pack("<HH2sHI", 0x0010, 0x0010, b"UT", 0, 0xFFFFFFF0) + raw[at + 8 :]
    _refused(_write(tmp_path, "liar.dcm", raw), "truncated", ingest=ingest)


@pytest.mark.parametrize("ingest", BOTH_PATHS)
def test_it_refuses_an_item_that_overruns_its_sequence(tmp_path, ds, ingest):
    raw = hostile.encode(hostile.with_private_sequence(ds))
    liar = struct.pack("<HH2sHI", 0x0009, 0x1010, b"SQ", 0, 8) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 1000
    )
    path = _write(tmp_path, "overrun.dcm", raw.replace(hostile.EMPTY_PRIVATE_SQ, liar))
    _refused(path, "overruns its sequence", ingest=ingest)


def test_it_refuses_a_file_over_the_cap_without_reading_it(tmp_path, ds):
    path = _write(tmp_path, "big.dcm", hostile.encode(ds))
    _refused(path, "more than the per-file cap of 1.0 KiB", max_file_bytes=1024)


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("depth", [MAX_NESTING_DEPTH + 1, 2_000, 40_000])
@pytest.mark.parametrize("ingest", BOTH_PATHS)
def test_it_refuses_deep_nesting_the_same_way_on_both_paths(tmp_path, ds, depth, implicit, ingest):
    raw = hostile.encode(hostile.with_private_sequence(ds), implicit=implicit)
    path = _write(tmp_path, "deep.dcm", hostile.nested(raw, depth, implicit=implicit))
    _refused(path, f"nest deeper than {MAX_NESTING_DEPTH} levels", ingest=ingest)


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_it_accepts_the_depth_limit_within_a_small_recursion_limit(tmp_path, ds, implicit):
    raw = hostile.encode(hostile.with_private_sequence(ds), implicit=implicit)
    path = _write(tmp_path, "deep.dcm", hostile.nested(raw, MAX_NESTING_DEPTH, implicit=implicit))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # what a library caller may have; Pyodide's stack is small
    try:
        fast, reference = (run(path, uid_secret=SECRET) for run in BOTH_PATHS)
    finally:
        sys.setrecursionlimit(limit)
    assert fast == reference


@pytest.mark.parametrize("ingest", BOTH_PATHS)
def test_it_refuses_the_file_cut_anywhere(tmp_path, ds, ingest):
    raw = hostile.encode(hostile.with_private_sequence(ds))
    started = time.monotonic()
    for cut in range(0, len(raw) - 1, 7):
        path = _write(tmp_path, "cut.dcm", raw[:cut])
        with pytest.raises(IngestRefused) as refused:
            ingest(path, uid_secret=SECRET)
        assert refused.value.reason
    assert time.monotonic() - started < 10 * QUICK_S


def test_it_refuses_a_truncated_deflated_file(tmp_path, ds):
    raw = hostile.deflated(ds)
    _refused(_write(tmp_path, "cut.dcm", raw[: len(raw) - 40]), "truncated|corrupt")


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("empty", b"", "not a DICOM Part 10 file"),
        ("zeros", bytes(4096), "not a DICOM Part 10 file"),
        ("dicm-then-zeros", bytes(128) + b"DICM" + bytes(4096), "no Transfer Syntax UID"),
        ("dicm-then-ff", bytes(128) + b"DICM" + b"\xff" * 4096, "no Transfer Syntax UID"),
        ("text", b"Patient: Jane Doe\n" * 100, "not a DICOM Part 10 file"),
    ],
)
def test_it_refuses_garbage(tmp_path, name, data, match):
    _refused(_write(tmp_path, name, data), match)


def test_it_refuses_garbage_after_a_valid_file_meta(tmp_path, ds):
    head, _ = hostile.split_meta(hostile.encode(ds))
    path = _write(tmp_path, "meta-then-garbage.dcm", head + os.urandom(1 << 16))
    _refused(path, "corrupt|truncated|no valid VR|nest|elements|exceeds|cap")


@pytest.mark.parametrize(
    ("keyword", "value", "match"),
    [
        ("PhotometricInterpretation", "YBR_WEIRD", "Photometric Interpretation .* not decodable"),
        ("PhotometricInterpretation", "RGB", "Photometric Interpretation .* not decodable"),
        ("BitsAllocated", 13, "Bits Allocated .* is 13"),
        ("BitsAllocated", 32, "Bits Allocated .* is 32"),
        ("BitsStored", 17, "Bits Stored .* is 17"),
        ("BitsStored", 0, "Bits Stored .* is 0"),
        ("HighBit", 3, "High Bit .* is 3"),
        ("PixelRepresentation", 2, "Pixel Representation .* is 2"),
        ("SamplesPerPixel", 3, "Samples per Pixel .* is 3"),
        ("Rows", 17, "Pixel Data is truncated"),
        ("Columns", 8, "Pixel Data holds .* declare"),
        ("NumberOfFrames", "0", "Number of Frames .* is 0"),
    ],
)
@pytest.mark.parametrize("ingest", BOTH_PATHS)
def test_it_refuses_pixels_a_node_cannot_decode(tmp_path, ds, keyword, value, match, ingest):
    if keyword == "Columns":
        ds.PixelData = ds.PixelData * 1024  # far beyond the slack
    setattr(ds, keyword, value)
    _refused(_write(tmp_path, "odd.dcm", hostile.encode(ds)), match, ingest=ingest)


@pytest.mark.parametrize("keyword", ["PhotometricInterpretation", "BitsStored", "HighBit"])
def test_it_refuses_a_missing_pixel_description(tmp_path, ds, keyword):
    delattr(ds, keyword)
    _refused(_write(tmp_path, "missing.dcm", hostile.encode(ds)), "no .*node cannot|no Photometric")


@pytest.mark.parametrize(
    ("sample", "syntax"),
    [
        ("SC_rgb_jpeg_gdcm.dcm", "JPEG Lossless, First-Order Prediction"),
        ("MR_small_jp2klossless.dcm", "JPEG 2000 Lossless"),
        ("MR_small_RLE.dcm", "RLE Lossless"),
    ],
)
def test_it_refuses_compressed_syntaxes_naming_them(tmp_path, sample, syntax):
    ds = pydicom.dcmread(get_testdata_file(sample))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    path = tmp_path / sample
    ds.save_as(path)
    reason = _refused(path, f"transfer syntax {syntax} .* compressed pixel data")
    assert "export the images uncompressed" in reason


def test_an_unexpected_error_is_a_refusal_logged_with_its_traceback(
    tmp_path, ds, monkeypatch, caplog
):
    import training.ingest.dicom_ingest

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(training.ingest.dicom_ingest, "scan_file", broken)  # a bug, injected
    path = _write(tmp_path, "fine.dcm", hostile.encode(ds))
    with caplog.at_level(logging.ERROR, logger="training.ingest.dicom_ingest"):
        reason = _refused(path, "could not be processed .*RuntimeError: a bug")
    assert "\n" not in reason
    assert caplog.records and caplog.records[0].exc_info is not None


_RSS_SCRIPT = """
import json, resource, sys, time
from pathlib import Path
from training.ingest.dataset import package_dataset
source, out = Path(sys.argv[1]), Path(sys.argv[2])
started = time.monotonic()
result = package_dataset(source, source / "annotations.json", out, dataset_id=sys.argv[3],
                         uid_secret=b"s", skip_refused=True)
# VmHWM is this program's own peak: ru_maxrss would include the forking pytest process.
status = Path("/proc/self/status")
lines = status.read_text().splitlines() if status.exists() else []
hwm = [int(line.split()[1]) for line in lines if line.startswith("VmHWM:")]
peak_kb = hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "seconds": time.monotonic() - started,
    "peak_rss_mb": peak_kb / 1024,
    "instances": result.instances,
    "refused": {r.path: r.reason for r in result.refused},
}))
"""


def test_the_packager_stays_under_256_mb_on_bombs_and_a_300_mb_file(tmp_path, ds):
    source = tmp_path / "source"
    source.mkdir()
    ds.Rows = ds.Columns = 512
    ds.PixelData = bytes(512 * 512 * 2)
    hostile.large_file(source / "large.dcm", ds, frames=600)  # 300 MiB of pixels
    small = hostile.dataset(tmp_path / "small")
    claim = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, 1 << 30)
    pad = claim + bytes((1 << 20) - len(claim))
    (source / "bomb-pixels.dcm").write_bytes(
        hostile.deflate_bomb(copy.deepcopy(small), pad, 1 << 30)
    )
    empty = struct.pack("<HH2sH", 0x0009, 0x1011, b"LO", 0)
    (source / "bomb-elements.dcm").write_bytes(hostile.deflate_bomb(small, empty, 1 << 30))
    (source / "annotations.json").write_text(
        json.dumps({"format": "medchain-annotations/1", "instances": {}})
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _RSS_SCRIPT,
            str(source),
            str(tmp_path / "out"),
            "7d0c8c35-5b0e-4b5e-9a51-1f7a2b7c9e01",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["instances"] == 1
    assert set(report["refused"]) == {"bomb-pixels.dcm", "bomb-elements.dcm"}
    assert report["peak_rss_mb"] < RSS_LIMIT_MB, report
    assert report["seconds"] < 60, report
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


_BREAKS = [
    ("PhotometricInterpretation", "RGB"),
    ("PhotometricInterpretation", "PALETTE COLOR"),
    ("PhotometricInterpretation", "MONOCHROME3"),
    ("SamplesPerPixel", 3),
    ("SamplesPerPixel", 0),
    ("BitsAllocated", 13),
    ("BitsAllocated", 32),
    ("BitsAllocated", 8),  # valid, but then the pixel data is twice too long
    ("BitsStored", 17),
    ("BitsStored", 0),
    ("HighBit", 15),
    ("HighBit", 0),
    ("PixelRepresentation", 2),
    ("Rows", 0),
    ("Rows", 17),
    ("Rows", 8),  # valid: the extra bytes are within the slack
    ("NumberOfFrames", "2"),
    ("NumberOfFrames", "0"),
]


@st.composite
def _headers(draw: st.DrawFn) -> dict[str, object]:
    """A decodable pixel description, then none, one or two of its values changed."""
    stored = draw(st.sampled_from([12, 16]))
    header: dict[str, object] = {
        "PhotometricInterpretation": draw(st.sampled_from(["MONOCHROME2", "MONOCHROME1"])),
        "SamplesPerPixel": 1,
        "BitsAllocated": 16,
        "BitsStored": stored,
        "HighBit": stored - 1,
        "PixelRepresentation": draw(st.sampled_from([0, 1])),
        "NumberOfFrames": draw(st.sampled_from([None, "1"])),
    }
    for keyword, value in draw(st.lists(st.sampled_from(_BREAKS), max_size=2)):
        header[keyword] = value
    header["depth"] = draw(st.integers(0, MAX_NESTING_DEPTH + 2))
    header["syntax"] = draw(st.sampled_from(["explicit", "implicit", "deflated"]))
    return header


def _nested_item(depth: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.998.4"
    for _ in range(depth - 1):
        outer = Dataset()
        outer.ReferencedImageSequence = Sequence([item])
        item = outer
    return item


@pytest.fixture(scope="module")
def base_dataset(tmp_path_factory) -> Dataset:
    return hostile.dataset(tmp_path_factory.mktemp("hyp"))


@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(header=_headers())
def test_generated_headers_get_the_same_answer_on_both_paths(base_dataset, tmp_path, header):
    ds = copy.deepcopy(base_dataset)
    depth, syntax = header.pop("depth"), header.pop("syntax")
    for keyword, value in header.items():
        if value is None:
            delattr(ds, keyword) if keyword in ds else None
        else:
            setattr(ds, keyword, value)
    if depth:
        ds.ReferencedImageSequence = Sequence([_nested_item(depth)])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    data = (
        hostile.deflated(ds)
        if syntax == "deflated"
        else hostile.encode(ds, implicit=syntax == "implicit")
    )
    path = _write(tmp_path, "generated.dcm", data)
    outcomes = []
    for run in BOTH_PATHS:
        try:
            outcomes.append(run(path, uid_secret=SECRET))
        except IngestRefused as refused:
            outcomes.append(refused.reason)
    assert outcomes[0] == outcomes[1]
    event("refused" if isinstance(outcomes[0], str) else "accepted")
    if not isinstance(outcomes[0], str):
        assert read_hu(outcomes[0].data).shape[1:] == (int(ds.Rows), int(ds.Columns))
