"""The raw header codec gives the pydicom path's bytes, or declines; never anything else."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_files
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from tests.examples import examples
from training.ingest.deid import PIXEL_DATA, IngestRefused, load_profile
from training.ingest.dicom_fast import ingest_bytes
from training.ingest.dicom_ingest import IngestedInstance, ingest_file, ingest_file_pydicom
from training.ingest.phantoms import PROFILES, write_ct_dataset

SECRET = b"owner secret of hospital A, 32 b"
PROFILE = load_profile()
SAMPLES = sorted(p for p in get_testdata_files() if Path(p).is_file())  # inside the wheel


def _reference(path: Path) -> IngestedInstance | None:
    try:
        return ingest_file_pydicom(path, uid_secret=SECRET)
    except IngestRefused:
        return None


def _assert_same_or_declined(path: Path) -> IngestedInstance | None:
    fast = ingest_bytes(path.read_bytes(), uid_secret=SECRET, profile=PROFILE)
    if fast is None:
        return None
    reference = _reference(path)
    assert reference is not None, "the codec accepted a file the pydicom path refuses"
    assert fast.data == reference.data
    assert fast == reference
    return fast


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("phantoms")
    paths = {}
    for name in PROFILES:
        write_ct_dataset(root / name, profile=name, count=1, seed=3, rows=48, cols=48)
        paths[name] = root / name / "slice_0000.dcm"
    return paths


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_it_takes_every_scanner_profile_and_matches_pydicom(phantoms, name):
    assert _assert_same_or_declined(phantoms[name]) is not None


def test_it_matches_pydicom_on_every_profile_rule_in_a_flat_header(phantoms, tmp_path):
    """A marker in each non-sequence tag of the profile table: K, X, Z, D and U all agree."""
    ds = pydicom.dcmread(phantoms["hospital-a"])
    for i, rule in enumerate(sorted(PROFILE.exact.values(), key=lambda r: r.pattern)):
        vr = dictionary_VR(rule.value).split(" or ")[0]
        # Sequences and elements after Pixel Data are the pydicom path's (declined here).
        if rule.keyword == "SOPClassUID" or rule.value >= PIXEL_DATA or vr in ("SQ", "UN"):
            continue
        ds.add_new(rule.value, vr, _marker(vr, i))
    ds.add_new(0x00091010, "LO", "PRIVATE MARKER")
    ds.add_new(0x00400554, "UI", "1.2.826.0.1.3680043.10.998.1")  # an unlisted UID
    path = tmp_path / "flat.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert _assert_same_or_declined(path) is not None


@pytest.mark.parametrize("undefined_items", [False, True], ids=["items-defined", "items-open"])
@pytest.mark.parametrize("undefined_sequences", [False, True], ids=["sq-defined", "sq-open"])
def test_it_matches_pydicom_on_nested_sequences(
    phantoms, tmp_path, undefined_sequences, undefined_items
):
    """Kept (K), emptied (Z) and removed (X) sequences, nested, in both length encodings."""
    ds = pydicom.dcmread(phantoms["hospital-b"])
    nested = Dataset()
    nested.PatientName = "NESTED^NAME"
    nested.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.998.2"
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    referenced.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.998.3"
    referenced.ReferencedPatientSequence = Sequence([nested])  # X inside K
    referenced.add_new(0x00091010, "LO", "PRIVATE IN AN ITEM")
    ds.ReferencedImageSequence = Sequence([referenced, Dataset()])  # K, with an empty item
    ds.ReferencedStudySequence = Sequence([_coded("STUDY")])  # Z
    ds.OtherPatientIDsSequence = Sequence([_coded("OTHER")])  # X
    ds.DeidentificationMethodCodeSequence = Sequence([_coded("OLD METHOD")])  # replaced
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = undefined_sequences
            for item in elem.value:
                item.is_undefined_length_sequence_item = undefined_items
    # An open one here keeps its form in the pydicom path's output: the codec declines it.
    ds["DeidentificationMethodCodeSequence"].is_undefined_length = False
    path = tmp_path / "nested.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = _assert_same_or_declined(path)
    assert result is not None
    assert b"NESTED^NAME" not in result.data and b"OTHER" not in result.data


@pytest.mark.parametrize("vr", ["CS", "LO"])
def test_it_agrees_on_a_file_already_marked_de_identified(phantoms, tmp_path, vr):
    ds = pydicom.dcmread(phantoms["hospital-a"])
    ds.add_new(0x00120062, vr, "NO")  # Patient Identity Removed, maybe with another VR
    ds.DeidentificationMethod = "SOMEONE ELSE'S"
    path = tmp_path / "marked.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = _assert_same_or_declined(path)
    assert (result is not None) == (vr == "CS")


def _coded(meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "1", "99X", meaning
    return item


def _marker(vr: str, i: int) -> object:
    binary = {"US": 40000 + i, "SS": -i, "UL": 70000 + i, "SL": -i, "FL": 1.5, "FD": 2.5}
    if vr in binary:
        return binary[vr]
    return {
        "DA": "20010615",
        "DT": "20010615101010",
        "TM": "101010",
        "AS": "040Y",
        "DS": f"{i}.25",
        "IS": str(i),
        "UI": f"1.2.826.0.1.3680043.10.999.{i}",
        "AT": 0x00100010,
    }.get(vr, f"MK{i:04d}Q" if vr not in ("OB", "OW", "OF", "OD", "OL", "OV") else b"MKBIN0")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_it_matches_or_declines_each_pydicom_sample():
    taken = [path for path in SAMPLES if _assert_same_or_declined(Path(path)) is not None]
    assert len(taken) >= 10  # the flat explicit-VR CT and MR slices among them


def test_it_declines_implicit_vr(phantoms, tmp_path):
    ds = pydicom.dcmread(phantoms["hospital-b"])
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    implicit = tmp_path / "implicit.dcm"
    ds.save_as(implicit, implicit_vr=True, little_endian=True)
    assert ingest_bytes(implicit.read_bytes(), uid_secret=SECRET, profile=PROFILE) is None
    assert ingest_file(implicit, uid_secret=SECRET) == ingest_file_pydicom(
        implicit, uid_secret=SECRET
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("SOPInstanceUID", "1.2.3.4 "),  # padded with a space, not a NUL
        ("SOPInstanceUID", "1.2.3\\4.5"),  # two values
        ("StudyInstanceUID", "1.2.3\\\\4"),  # an empty value among two
        ("BurnedInAnnotation", "YES"),
        ("BurnedInAnnotation", "no"),
        ("NumberOfFrames", "0"),
        ("NumberOfFrames", "+1"),
        ("Rows", 0),
        ("Modality", " CT"),
        ("SpecificCharacterSet", "ISO_IR 192"),
    ],
)
def test_it_agrees_on_values_pydicom_re_encodes(phantoms, tmp_path, keyword, value):
    ds = pydicom.dcmread(phantoms["hospital-c"])
    setattr(ds, keyword, value)
    path = tmp_path / "edited.dcm"
    ds.save_as(path, enforce_file_format=True)
    _assert_same_or_declined(path)
    try:
        result = ingest_file(path, uid_secret=SECRET)
    except IngestRefused:
        assert _reference(path) is None
    else:
        assert result == _reference(path)


@pytest.fixture(scope="module")
def phantom_bytes(phantoms, tmp_path_factory) -> bytes:
    """A phantom with a kept sequence of one open and one defined-length item, one nested."""
    ds = pydicom.dcmread(phantoms["hospital-c"])
    inner = _coded("INNER")
    inner.is_undefined_length_sequence_item = True
    outer = Dataset()
    outer.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.998.4"
    outer.ReferencedStudySequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([outer, _coded("SECOND")])
    path = tmp_path_factory.mktemp("fuzz") / "with-sequences.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def test_a_long_elements_nonzero_reserved_bytes_are_left_to_pydicom(phantom_bytes, tmp_path):
    raw = bytearray(phantom_bytes)
    pixel_vr = len(raw) - 48 * 48 * 2 - 8  # Pixel Data's "OW", then its reserved bytes
    assert raw[pixel_vr : pixel_vr + 4] == b"OW\x00\x00"
    raw[pixel_vr + 2] = 1  # Hypothesis's find: pydicom writes them back as zeros
    path = tmp_path / "reserved.dcm"
    path.write_bytes(bytes(raw))

    assert ingest_bytes(bytes(raw), uid_secret=SECRET, profile=PROFILE) is None
    assert _reference(path) is not None


@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_corrupted_header_matches_pydicom_or_is_declined(phantom_bytes, tmp_path, data):
    raw = bytearray(phantom_bytes)
    header_end = len(raw) - 48 * 48 * 2
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, header_end - 1))
        raw[position] = data.draw(
            st.sampled_from([0, 1, 0x20, 0x2E, 0x5C, 0xFF, *range(0x30, 0x3A)])
        )
    cut = data.draw(st.sampled_from([len(raw), len(raw) - 2, header_end]))
    path = tmp_path / "fuzzed.dcm"
    path.write_bytes(bytes(raw[:cut]))
    _assert_same_or_declined(path)
