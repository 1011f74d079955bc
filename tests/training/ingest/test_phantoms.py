from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest

from training.ingest.annotations import parse_annotations
from training.ingest.phantoms import (
    PROFILES,
    ScannerProfile,
    box_of,
    contrast_to_noise,
    generate_slice,
    write_ct_dataset,
)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_it_writes_byte_identical_files_from_the_same_seed(tmp_path):
    for run in ("one", "two"):
        write_ct_dataset(tmp_path / run, profile="hospital-a", count=5, seed=42, rows=64, cols=64)
    write_ct_dataset(tmp_path / "other", profile="hospital-a", count=5, seed=43, rows=64, cols=64)
    one, two, other = (_files(tmp_path / run) for run in ("one", "two", "other"))
    assert len(one) == 6 and one == two
    assert all(one[name] != other[name] for name in one)


def test_it_writes_valid_ct_image_storage_with_an_identifying_header(tmp_path):
    annotations = write_ct_dataset(tmp_path, profile="hospital-b", count=5, seed=1)
    datasets = [pydicom.dcmread(p) for p in sorted(tmp_path.glob("*.dcm"))]
    ds = datasets[0]
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" == ds.file_meta.MediaStorageSOPClassUID
    assert ds.Modality == "CT" and ds.BurnedInAnnotation == "NO"
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "InstitutionName",
        "ReferringPhysicianName", "AccessionNumber", "StudyDate", "StudyInstanceUID",
        "SeriesInstanceUID", "FrameOfReferenceUID",
    ):  # fmt: skip
        assert str(ds[keyword].value), keyword
    assert any(elem.tag.is_private for elem in ds)
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert hu.min() >= -1024 and hu.max() <= 3071
    # Slices of one study share its UIDs; each slice has its own SOP Instance UID.
    assert datasets[0].StudyInstanceUID == datasets[3].StudyInstanceUID
    assert datasets[0].StudyInstanceUID != datasets[4].StudyInstanceUID
    assert len({d.SOPInstanceUID for d in datasets}) == 5
    images = {str(d.SOPInstanceUID): (d.Rows, d.Columns) for d in datasets}
    parsed = parse_annotations(annotations.read_bytes(), images)
    assert set(parsed.instances) == set(images)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_it_stores_hu_through_rescale_for_each_profile(tmp_path, profile):
    write_ct_dataset(tmp_path, profile=profile, count=1, seed=3, rows=64, cols=64)
    ds = pydicom.dcmread(tmp_path / "slice_0000.dcm")
    rng = np.random.default_rng([3, zlib.crc32(profile.encode())])  # write_ct_dataset's seeding
    expected, _ = generate_slice(rng, PROFILES[profile], rows=64, cols=64)
    hu = ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept)
    assert np.array_equal(hu, expected)
    assert ds.PixelRepresentation == (0 if PROFILES[profile].unsigned_storage else 1)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_its_boxes_are_half_open_inside_the_image_and_on_darker_lesions(profile):
    rng = np.random.default_rng(7)
    scanner = PROFILES[profile]
    gaps: list[float] = []
    for _ in range(12):
        pixels, boxes = generate_slice(rng, scanner, rows=200, cols=240)
        assert pixels.dtype == np.int16 and pixels.shape == (200, 240)
        for x0, y0, x1, y1, label in boxes:
            assert 0 <= x0 < x1 <= 240 and 0 <= y0 < y1 <= 200 and label == "lesion"
            cy, cx, hy, hx = (
                (y0 + y1) // 2,
                (x0 + x1) // 2,
                max((y1 - y0) // 4, 1),
                max((x1 - x0) // 4, 1),
            )
            centre = pixels[cy - hy : cy + hy + 1, cx - hx : cx + hx + 1]
            ring = np.concatenate(
                [
                    pixels[max(y0 - 4, 0) : y0, x0:x1].ravel(),
                    pixels[y1 : y1 + 4, x0:x1].ravel(),
                    pixels[y0:y1, max(x0 - 4, 0) : x0].ravel(),
                    pixels[y0:y1, x1 : x1 + 4].ravel(),
                ]
            )
            gaps.append(float(np.median(ring) - np.median(centre)))
    assert len(gaps) >= 8
    contrast = abs(min(scanner.lesion_contrast_hu)) * scanner.intensity_scale
    # Hypodense lesions: the centre is darker than the liver around it, by about the contrast.
    assert 0.4 * contrast < np.mean(gaps) < 2.0 * contrast


def test_its_boxes_are_tight_on_a_noise_free_scanner():
    clean = dataclasses.replace(
        PROFILES["hospital-a"],
        noise_sigma=0.0,
        blur_sigma=0.0,
        texture_amplitude=0.0,
        distractor_count=0,
        lesion_contrast_hu=(-300.0, -300.0),
    )
    rng = np.random.default_rng(0)
    count = 0
    for _ in range(10):
        pixels, boxes = generate_slice(rng, clean, rows=128, cols=128)
        for x0, y0, x1, y1, _ in boxes:
            window = pixels[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1]
            liver = np.bincount((window - window.min()).ravel()).argmax() + window.min()
            lesion = pixels < liver - 100
            # Every edge row and column of the box touches the lesion; the ring outside does not.
            assert lesion[y0, x0:x1].any() and lesion[y1 - 1, x0:x1].any()
            assert lesion[y0:y1, x0].any() and lesion[y0:y1, x1 - 1].any()
            assert not lesion[max(y0 - 1, 0), x0:x1].any() or y0 == 0
            assert not lesion[y0:y1, max(x0 - 1, 0)].any() or x0 == 0
            count += 1
    assert count >= 5


def test_box_of_is_half_open():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    assert box_of(mask) == (3, 2, 9, 5, "lesion")


def test_profiles_differ_and_report_a_low_contrast_to_noise_ratio():
    assert {"hospital-a", "hospital-b", "hospital-c", "applicant"} <= set(PROFILES)
    cnrs = {name: contrast_to_noise(p) for name, p in PROFILES.items()}
    assert all(0.5 < cnr < 3.0 for cnr in cnrs.values()), cnrs
    assert len({round(c, 3) for c in cnrs.values()}) == len(cnrs)
    means = {}
    for name, profile in PROFILES.items():
        rng = np.random.default_rng(0)
        slices = [generate_slice(rng, profile, rows=96, cols=96) for _ in range(6)]
        body = np.concatenate([s[s > -500] for s, _ in slices])
        sizes = [(x1 - x0) * (y1 - y0) for _, boxes in slices for x0, y0, x1, y1, _ in boxes]
        means[name] = (float(body.mean()), float(body.std()), float(np.mean(sizes or [0])))
    # Non-IID: intensity, spread and lesion size all shift between hospitals.
    for a in means:
        for b in means:
            if a < b:
                assert means[a] != pytest.approx(means[b], rel=0.02), (a, b)


def test_a_custom_profile_is_accepted(tmp_path):
    custom = ScannerProfile(
        name="custom",
        intensity_scale=1.0,
        intensity_offset=0.0,
        noise_sigma=5.0,
        blur_sigma=0.5,
        lesion_size_mix=((1.0, 4.0, 6.0),),
        lesion_contrast_hu=(-30.0, -20.0),
        texture_amplitude=5.0,
        distractor_count=2,
    )
    path = write_ct_dataset(tmp_path, profile=custom, count=2, seed=0, rows=48, cols=48)
    assert path.name == "annotations.json" and len(list(tmp_path.glob("*.dcm"))) == 2
