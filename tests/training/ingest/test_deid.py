from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from training.ingest.deid import (
    IngestRefused,
    check_ingestible,
    deidentify,
    load_profile,
    remap_uid,
)
from training.ingest.dicom_ingest import ingest_file
from training.ingest.phantoms import write_ct_dataset

SECRET = b"owner secret of hospital A, 32 b"
TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
INT_VRS = {"US", "SS", "UL", "SL"}
PROFILE = load_profile()
RULES = sorted(PROFILE.exact.values(), key=lambda r: r.pattern)


def _marker(vr: str, i: int) -> Any:
    """A value unique to row ``i`` that can be searched for in the output bytes."""
    if vr in TEXT_VRS:
        return f"MK{i:04d}Q"
    return {
        "DA": f"{1700 + i:04d}0615",
        "DT": f"{1700 + i:04d}0615101010",
        "TM": f"235959.{900000 + i}",
        "AS": f"{i % 1000:03d}D",
        "DS": f"{9000 + i}.25",
        "IS": f"{70000 + i}",
        "UI": f"1.2.826.0.1.3680043.10.999.{10000 + i}",
        "OB": f"MKBIN{i:04d}Q".encode(),
        "OW": f"MKBIN{i:04d}Q".encode(),
        "UN": f"MKBIN{i:04d}Q".encode(),
    }.get(vr, 40000 + i if vr in INT_VRS else None)


def _searchable(marker: Any) -> bytes | None:
    if isinstance(marker, bytes):
        return marker
    return marker.encode() if isinstance(marker, str) else None


def _vr(tag: int) -> str:
    return dictionary_VR(tag).split(" or ")[0]


def _marked(ds: Dataset) -> dict[int, Any]:
    """Put a marker in every tag of the profile; return tag -> marker (text, or an item)."""
    markers: dict[int, Any] = {}
    for i, rule in enumerate(RULES):
        vr = _vr(rule.value)
        if rule.keyword == "SOPClassUID":  # must stay CT for the file to be ingested
            markers[rule.value] = ds.SOPClassUID
        elif vr == "SQ":
            item = Dataset()
            item.CodeMeaning = _marker("LO", 5000 + i)
            item.ReferencedSOPInstanceUID = _marker("UI", 5000 + i)
            ds.add_new(rule.value, "SQ", Sequence([item]))
            markers[rule.value] = item
        else:
            markers[rule.value] = _marker(vr, i)
            assert markers[rule.value] is not None, f"no marker for VR {vr}"
            ds.add_new(rule.value, vr, markers[rule.value])
    return markers


@pytest.fixture(scope="module")
def marked(tmp_path_factory) -> tuple[Path, Dataset, dict[int, Any], bytes]:
    out = tmp_path_factory.mktemp("marked")
    write_ct_dataset(out, profile="hospital-a", count=2, seed=11, rows=64, cols=64)
    path = out / "slice_0000.dcm"
    ds = pydicom.dcmread(path)
    markers = _marked(ds)
    ds.add_new(0x00080000, "UL", 1234)  # a retired group length
    ds.add_new(0x60000010, "US", 64)  # an overlay plane
    ds.add_new(0x60003000, "OW", b"MKOVERLAYDATA0Q\x00")
    ds.add_new(0x50000005, "US", 1)  # a curve
    ds.add_new(0x00400554, "UI", "1.2.826.0.1.3680043.10.998.1")  # unlisted UID
    nested = Dataset()
    nested.PatientName = "MKNESTEDNAME"
    nested.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.998.2"
    ds.ReferencedImageSequence[0].ReferencedPatientSequence = Sequence([nested])
    ds.ReferencedImageSequence.append(nested)
    ds.save_as(path, enforce_file_format=True)
    original = pydicom.dcmread(path)
    data = ingest_file(path, uid_secret=SECRET).data
    return path, original, markers, data


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.pattern}-{r.keyword}-{r.action}")
def test_it_applies_the_profile_tag_by_tag(marked, rule):
    _, original, markers, data = marked
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    marker = markers[rule.value]
    text = _searchable(marker)
    if rule.action == "X":
        assert rule.value not in out
    elif rule.action == "Z":
        assert rule.value in out
        assert out[rule.value].is_empty
    elif rule.action == "D":
        assert out[rule.value].value == PROFILE.dummy[_vr(rule.value)]
    elif rule.action == "U":
        assert out[rule.value].value == remap_uid(marker, uid_secret=SECRET)
        assert out[rule.value].value.startswith("2.25.")
    else:
        assert rule.action == "K"
        if isinstance(marker, Dataset):
            assert out[rule.value].value[0].CodeMeaning == marker.CodeMeaning
        else:
            assert out[rule.value].value == marker
    if rule.action != "K":
        if isinstance(marker, Dataset):
            assert marker.CodeMeaning.encode() not in data
            assert marker.ReferencedSOPInstanceUID.encode() not in data
        elif text is not None:
            assert text not in data, f"{rule.keyword} marker {text!r} survives in the bytes"


def test_it_scrubs_the_phantom_header_private_tags_and_extras(marked):
    _, original, _, data = marked
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert not any(elem.tag.is_private for elem in out.iterall())
    assert b"MEDCHAIN PHANTOM" not in data
    assert b"MKOVERLAYDATA0Q" not in data
    assert 0x60000010 not in out and 0x50000005 not in out and 0x00080000 not in out
    assert out.SpecimenUID == remap_uid("1.2.826.0.1.3680043.10.998.1", uid_secret=SECRET)
    assert b"MKNESTEDNAME" not in data and b"1.2.826.0.1.3680043.10.998.2" not in data
    assert out.ReferencedImageSequence[1].PatientName == ""
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethod == PROFILE.method
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    # Kept: what training needs, and the registered SOP class.
    assert out.SOPClassUID == original.SOPClassUID
    assert out.Manufacturer == original.Manufacturer
    assert out.RescaleIntercept == original.RescaleIntercept
    assert out.PixelData == original.PixelData
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_it_leaves_none_of_the_phantoms_identifying_values(tmp_path):
    write_ct_dataset(tmp_path, profile="hospital-b", count=2, seed=5, rows=48, cols=48)
    path = tmp_path / "slice_0001.dcm"  # the second slice also refers to the first
    ds = pydicom.dcmread(path)
    data = ingest_file(path, uid_secret=SECRET).data
    nested = (
        ds.OtherPatientIDsSequence[0].PatientID,
        ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID,
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID,
    )
    for value in nested:
        assert value.encode() not in data, value
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert "OtherPatientIDsSequence" not in out and out.ReferencedStudySequence == []
    first = ingest_file(tmp_path / "slice_0000.dcm", uid_secret=SECRET)
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.sop_uid_new
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "InstitutionAddress",
        "ReferringPhysicianName", "AccessionNumber", "StudyDate", "OperatorsName", "StationName",
        "PerformingPhysicianName", "DeviceSerialNumber", "SOPInstanceUID", "StudyInstanceUID",
        "SeriesInstanceUID", "FrameOfReferenceUID",
    ):  # fmt: skip
        value = str(ds[keyword].value).encode()
        assert value and value not in data, keyword


def test_it_remaps_uids_stably_and_per_secret():
    uid = "1.2.826.0.1.3680043.8.498.1"
    expected = hmac.new(SECRET, uid.encode(), hashlib.sha256).digest()[:16]
    assert remap_uid(uid, uid_secret=SECRET) == "2.25." + str(int.from_bytes(expected, "big"))
    # Pinned: a change to the mapping would break every dataset already uploaded.
    assert remap_uid("1.2.3", uid_secret=b"k") == "2.25.111263612402845642126382191733580811337"
    assert remap_uid(uid, uid_secret=SECRET) == remap_uid(uid + "\x00", uid_secret=SECRET)
    assert remap_uid(uid, uid_secret=SECRET) != remap_uid(uid, uid_secret=b"another owner")
    assert remap_uid("1.2.840.10008.5.1.4.1.1.2", uid_secret=SECRET) == "1.2.840.10008.5.1.4.1.1.2"


def test_it_maps_uids_consistently_within_a_dataset(tmp_path):
    write_ct_dataset(tmp_path, profile="hospital-a", count=4, seed=2, rows=32, cols=32)
    first = pydicom.dcmread(tmp_path / "slice_0000.dcm")
    second = pydicom.dcmread(tmp_path / "slice_0001.dcm")
    second.ReferencedImageSequence = Sequence([Dataset()])
    second.ReferencedImageSequence[0].ReferencedSOPClassUID = first.SOPClassUID
    second.ReferencedImageSequence[0].ReferencedSOPInstanceUID = first.SOPInstanceUID
    out_first = deidentify(first, uid_secret=SECRET)
    out_second = deidentify(second, uid_secret=SECRET)
    assert out_first.StudyInstanceUID == out_second.StudyInstanceUID
    assert out_first.FrameOfReferenceUID == out_second.FrameOfReferenceUID
    reference = out_second.ReferencedImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == out_first.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"


def test_it_gives_identical_bytes_for_the_same_secret_and_different_for_another(tmp_path):
    write_ct_dataset(tmp_path, profile="hospital-c", count=1, seed=1, rows=32, cols=32)
    path = tmp_path / "slice_0000.dcm"
    one, two = (ingest_file(path, uid_secret=SECRET) for _ in range(2))
    other = ingest_file(path, uid_secret=b"another owner")
    assert one == two
    assert other.sop_uid_new != one.sop_uid_new and other.data != one.data


def test_the_profile_table_is_consistent():
    assert len(PROFILE.exact) >= 200
    for rule in PROFILE.exact.values():
        vr = _vr(rule.value)
        assert rule.action in "DZXKU"
        assert rule.action != "U" or vr == "UI", rule
        assert rule.action != "D" or vr in PROFILE.dummy, rule
        if rule.standard in ("Z", "X", "D", "U"):
            assert rule.action == rule.standard or (vr == "SQ" and rule.standard == "D"), rule
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
        "InstitutionName", "InstitutionAddress", "ReferringPhysicianName", "AccessionNumber",
        "StudyDate", "StudyTime", "StudyID", "SOPInstanceUID", "StudyInstanceUID",
        "SeriesInstanceUID", "FrameOfReferenceUID", "OperatorsName", "StationName",
        "PerformingPhysicianName", "DeviceSerialNumber", "OtherPatientIDs", "PatientAddress",
    ):  # fmt: skip
        assert any(r.keyword == keyword and r.action != "K" for r in PROFILE.exact.values())


def _ct(**values: Any) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = values.pop("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = 16
    ds.PixelData = b"\x00" * 8
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("ds", "reason"),
    [
        (_ct(BurnedInAnnotation="YES"), "Burned In Annotation (0028,0301) is YES"),
        (_ct(BurnedInAnnotation="MAYBE"), "unrecognised value"),
        (_ct(SOPClassUID="1.2.840.10008.5.1.4.1.1.7"), "Secondary Capture Image Storage"),
        (_ct(SOPClassUID="1.2.840.10008.5.1.4.1.1.481.5"), "unsupported SOP class"),
        (_ct(PixelData=None), "no Pixel Data"),
        (_ct(PixelData=b"\x00" * 6), "truncated"),
        (_ct(SOPClassUID=None), "no SOP Class UID"),
    ],
)
def test_it_refuses_what_it_must_not_train_on(ds, reason):
    with pytest.raises(IngestRefused) as err:
        check_ingestible(ds)
    assert reason in err.value.reason


@pytest.mark.parametrize(
    "sop_class",
    [
        "1.2.840.10008.5.1.4.1.1.2",
        "1.2.840.10008.5.1.4.1.1.2.1",
        "1.2.840.10008.5.1.4.1.1.4",
        "1.2.840.10008.5.1.4.1.1.4.1",
    ],
)
@pytest.mark.parametrize("burned_in", [None, "NO"])
def test_it_accepts_ct_and_mr_without_burned_in_annotation(sop_class, burned_in):
    ds = _ct(SOPClassUID=sop_class)
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    check_ingestible(ds)
