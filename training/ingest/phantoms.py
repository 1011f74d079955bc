"""Synthetic CT slices with lesions and exact boxes, one "scanner" per hospital.

Lesions are small, low-contrast, textured ellipses inside the liver, among
organs, texture and look-alike distractors (bright, high-contrast lesions
are trivially detected: FACTS.md). Each :class:`ScannerProfile` shifts
intensity, noise, blur and the lesion mix, so hospitals' data are non-IID.
Everything is deterministic from a seed: same seed, byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from training.ingest.annotations import Annotations, Box
from training.ingest.deid import (
    CT_IMAGE_STORAGE,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
)

HU_MIN, HU_MAX = -1024, 3071
LESION_LABEL = "lesion"
SLICES_PER_STUDY = 4
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"

BoxTuple = tuple[int, int, int, int, str]


@dataclass(frozen=True)
class ScannerProfile:
    """How one hospital's scanner and patients differ from the others'.

    ``lesion_size_mix`` is ``(weight, min_radius, max_radius)`` with radii in
    pixels at 256x256 (scaled for other sizes); ``lesion_contrast_hu`` is the
    range of the lesion's offset from the liver, before the scanner's scale.
    """

    name: str
    intensity_scale: float
    intensity_offset: float
    noise_sigma: float
    blur_sigma: float
    lesion_size_mix: tuple[tuple[float, float, float], ...]
    lesion_contrast_hu: tuple[float, float]
    texture_amplitude: float
    distractor_count: int
    unsigned_storage: bool = False
    manufacturer: str = "MedChain Phantom"


PROFILES: dict[str, ScannerProfile] = {
    p.name: p
    for p in (
        ScannerProfile(
            name="hospital-a",
            intensity_scale=1.0,
            intensity_offset=0.0,
            noise_sigma=12.0,
            blur_sigma=0.8,
            lesion_size_mix=((0.5, 4.0, 7.0), (0.4, 7.0, 11.0), (0.1, 11.0, 15.0)),
            lesion_contrast_hu=(-45.0, -30.0),
            texture_amplitude=8.0,
            distractor_count=4,
            unsigned_storage=True,
            manufacturer="Alpha Medical",
        ),
        ScannerProfile(
            name="hospital-b",
            intensity_scale=0.9,
            intensity_offset=40.0,
            noise_sigma=20.0,
            blur_sigma=1.3,
            lesion_size_mix=((0.2, 5.0, 8.0), (0.5, 8.0, 13.0), (0.3, 13.0, 18.0)),
            lesion_contrast_hu=(-55.0, -35.0),
            texture_amplitude=12.0,
            distractor_count=6,
            manufacturer="Beta Imaging",
        ),
        ScannerProfile(
            name="hospital-c",
            intensity_scale=1.12,
            intensity_offset=-30.0,
            noise_sigma=8.0,
            blur_sigma=0.6,
            lesion_size_mix=((0.7, 3.5, 6.0), (0.3, 6.0, 9.0)),
            lesion_contrast_hu=(-32.0, -22.0),
            texture_amplitude=7.0,
            distractor_count=3,
            unsigned_storage=True,
            manufacturer="Gamma Systems",
        ),
        ScannerProfile(
            name="applicant",
            intensity_scale=1.0,
            intensity_offset=10.0,
            noise_sigma=16.0,
            blur_sigma=1.0,
            lesion_size_mix=((0.4, 3.0, 6.0), (0.4, 6.0, 11.0), (0.2, 11.0, 16.0)),
            lesion_contrast_hu=(-32.0, -18.0),
            texture_amplitude=12.0,
            distractor_count=5,
            manufacturer="Delta Tomography",
        ),
    )
}


def contrast_to_noise(profile: ScannerProfile) -> float:
    """Lesion CNR as the detector sees it: mean |contrast| over noise plus texture."""
    contrast = abs(sum(profile.lesion_contrast_hu) / 2) * profile.intensity_scale
    clutter = np.hypot(profile.noise_sigma, profile.texture_amplitude * profile.intensity_scale)
    return float(contrast / clutter)


def generate_slice(
    rng: np.random.Generator, profile: ScannerProfile, rows: int = 256, cols: int = 256
) -> tuple[np.ndarray, list[BoxTuple]]:
    """One axial slice in HU (int16) and its lesions' boxes, half-open pixel coords."""
    scale = min(rows, cols) / 256
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    hu = np.full((rows, cols), -1000.0)
    body, liver = _anatomy(rng, hu, yy, xx, rows=rows, cols=cols)
    hu += body * _texture(rng, (rows, cols), sigma=2.0 * scale) * profile.texture_amplitude
    occupied = np.zeros((rows, cols), dtype=bool)
    boxes: list[BoxTuple] = []
    for _ in range(_lesion_count(rng)):
        mask = _place_lesion(rng, profile, liver & ~occupied, yy, xx, scale=scale)
        if mask is None:
            continue
        contrast = rng.uniform(*profile.lesion_contrast_hu)
        lesion_texture = _texture(rng, (rows, cols), sigma=1.0 * scale) * abs(contrast) * 0.25
        hu[mask] += contrast + lesion_texture[mask]
        occupied |= _dilate(mask, int(4 * scale) + 2)
        boxes.append(box_of(mask))
    _add_distractors(rng, profile, hu, body & ~occupied, yy, xx, scale=scale)
    observed = hu * profile.intensity_scale + profile.intensity_offset
    observed = _gaussian_blur(observed, profile.blur_sigma * scale)
    observed += rng.normal(0.0, profile.noise_sigma, size=observed.shape) * body
    pixels = np.clip(np.rint(observed), HU_MIN, HU_MAX).astype(np.int16)
    return pixels, boxes


def box_of(mask: np.ndarray, label: str = LESION_LABEL) -> BoxTuple:
    """The tight half-open box ``(x0, y0, x1, y1, label)`` of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, label


def write_ct_dataset(
    out_dir: str | Path,
    *,
    profile: ScannerProfile | str,
    count: int,
    seed: int,
    rows: int = 256,
    cols: int = 256,
) -> Path:
    """Write ``count`` CT Image Storage files and ``annotations.json``; return the latter."""
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, zlib.crc32(profile.name.encode())])
    instances: dict[str, tuple[Box, ...]] = {}
    for index in range(count):
        pixels, boxes = generate_slice(rng, profile, rows=rows, cols=cols)
        ds = _ct_dataset(pixels, profile=profile, seed=seed, index=index)
        pydicom.dcmwrite(out / f"slice_{index:04d}.dcm", ds, enforce_file_format=True)
        instances[str(ds.SOPInstanceUID)] = tuple(
            Box(x0=b[0], y0=b[1], x1=b[2], y1=b[3], label=b[4]) for b in boxes
        )
    path = out / "annotations.json"
    path.write_bytes(Annotations(instances=instances).to_json())
    return path


def _anatomy(
    rng: np.random.Generator,
    hu: np.ndarray,
    yy: np.ndarray,
    xx: np.ndarray,
    *,
    rows: int,
    cols: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint an abdomen-like section into ``hu``; return the body and liver masks."""
    cy = rows * rng.uniform(0.48, 0.54)
    cx = cols * rng.uniform(0.47, 0.53)
    a, b = cols * rng.uniform(0.40, 0.46), rows * rng.uniform(0.31, 0.37)
    body = _ellipse(yy, xx, cy, cx, b, a)
    hu[body] = -100.0  # subcutaneous fat
    inner = _ellipse(yy, xx, cy, cx, b * 0.9, a * 0.92)
    hu[inner] = 35.0  # muscle and bowel
    for _ in range(rng.integers(4, 9)):  # fat between the loops
        fy, fx = cy + rng.uniform(-0.5, 0.6) * b, cx + rng.uniform(-0.3, 0.6) * a
        hu[_ellipse(yy, xx, fy, fx, b * rng.uniform(0.04, 0.1), a * rng.uniform(0.04, 0.1))] = -90
    liver = (
        _ellipse(
            yy,
            xx,
            cy - 0.1 * b,
            cx - 0.4 * a,
            b * rng.uniform(0.55, 0.65),
            a * rng.uniform(0.4, 0.5),
            angle=rng.uniform(-0.4, 0.4),
        )
        & inner
    )
    liver_hu = rng.uniform(55.0, 65.0)
    hu[liver] = liver_hu
    hu[_ellipse(yy, xx, cy - 0.2 * b, cx + 0.55 * a, b * 0.25, a * 0.15, angle=0.5) & inner] = 45
    spine_y, spine_x = cy + 0.55 * b, cx + rng.uniform(-0.03, 0.03) * a
    hu[_ellipse(yy, xx, spine_y, spine_x, b * 0.16, a * 0.11)] = rng.uniform(500.0, 700.0)
    hu[_ellipse(yy, xx, spine_y, spine_x, b * 0.08, a * 0.06)] = 250.0
    hu[_ellipse(yy, xx, spine_y - 0.27 * b, spine_x + 0.05 * a, b * 0.07, b * 0.07)] = 160.0
    for side in (-1, 1):
        hu[_ellipse(yy, xx, cy + 0.3 * b, cx + side * 0.3 * a, b * 0.17, a * 0.09, angle=side)] = 30
    return body, liver & (hu == liver_hu)  # organs drawn later cover parts of it


def _lesion_count(rng: np.random.Generator) -> int:
    return int(rng.choice([0, 1, 1, 2, 2, 3]))


def _place_lesion(
    rng: np.random.Generator,
    profile: ScannerProfile,
    allowed: np.ndarray,
    yy: np.ndarray,
    xx: np.ndarray,
    *,
    scale: float,
) -> np.ndarray | None:
    """An elliptical lesion mask lying wholly inside ``allowed``, or None after 30 tries."""
    weights = np.array([w for w, _, _ in profile.lesion_size_mix])
    candidates = np.argwhere(allowed)
    if len(candidates) == 0:
        return None
    for _ in range(30):
        _, rmin, rmax = profile.lesion_size_mix[rng.choice(len(weights), p=weights / weights.sum())]
        radius = rng.uniform(rmin, rmax) * scale
        ry, rx = radius * rng.uniform(0.7, 1.0), radius * rng.uniform(0.7, 1.0)
        cy, cx = candidates[rng.integers(len(candidates))]
        mask = _ellipse(yy, xx, cy, cx, ry, rx, angle=rng.uniform(0, np.pi))
        if mask.any() and not (mask & ~allowed).any():
            return mask
    return None


def _add_distractors(
    rng: np.random.Generator,
    profile: ScannerProfile,
    hu: np.ndarray,
    allowed: np.ndarray,
    yy: np.ndarray,
    xx: np.ndarray,
    *,
    scale: float,
) -> None:
    """Look-alikes that are not lesions: bright vessels and long dark ducts."""
    candidates = np.argwhere(allowed)
    for i in range(profile.distractor_count):
        cy, cx = candidates[rng.integers(len(candidates))]
        if i % 2 == 0:
            r = rng.uniform(2.0, 5.0) * scale
            mask = _ellipse(yy, xx, cy, cx, r, r) & allowed
            hu[mask] += rng.uniform(40.0, 120.0)
        else:
            r = rng.uniform(6.0, 12.0) * scale
            mask = _ellipse(yy, xx, cy, cx, r, r * 0.2, angle=rng.uniform(0, np.pi)) & allowed
            hu[mask] += rng.uniform(*profile.lesion_contrast_hu)


def _ellipse(
    yy: np.ndarray,
    xx: np.ndarray,
    cy: float,
    cx: float,
    ry: float,
    rx: float,
    *,
    angle: float = 0.0,
) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u, v = dx * c + dy * s, -dx * s + dy * c
    return (u / max(rx, 0.5)) ** 2 + (v / max(ry, 0.5)) ** 2 <= 1.0


def _texture(rng: np.random.Generator, shape: tuple[int, int], *, sigma: float) -> np.ndarray:
    """Smooth random texture with unit standard deviation."""
    field = _gaussian_blur(rng.standard_normal(shape), sigma)
    return field / (field.std() or 1.0)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    radius = max(1, int(3 * sigma + 0.5))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = image
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], "edge")
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for k, w in zip(offsets, kernel, strict=True):
            acc += w * np.take(padded, np.arange(radius + k, radius + k + n), axis=axis)
        out = acc
    return out


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    out = np.zeros_like(mask)
    y0, y1 = max(ys.min() - radius, 0), ys.max() + radius + 1
    x0, x1 = max(xs.min() - radius, 0), xs.max() + radius + 1
    out[y0:y1, x0:x1] = True
    return out


def _uid(*parts: object) -> str:
    digest = hashlib.sha256("/".join(map(str, ("medchain-phantom", *parts))).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


_GIVEN = ["Anna", "Ben", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun"]
_FAMILY = ["Smith", "Wang", "Okafor", "Novak", "Garcia", "Tanaka", "Muller", "Rossi", "Kim"]


def _ct_dataset(pixels: np.ndarray, *, profile: ScannerProfile, seed: int, index: int) -> Dataset:
    study = index // SLICES_PER_STUDY
    slice_in_study = index % SLICES_PER_STUDY
    # Header values come from a generator keyed by (profile, seed, study) alone.
    hrng = np.random.default_rng([seed, zlib.crc32(profile.name.encode()), study, 7])
    study_date = dt.date(2021, 1, 1) + dt.timedelta(days=int(hrng.integers(0, 1000)))
    birth = dt.date(1935, 1, 1) + dt.timedelta(days=int(hrng.integers(0, 60 * 365)))
    patient = f"{_FAMILY[hrng.integers(len(_FAMILY))]}^{_GIVEN[hrng.integers(len(_GIVEN))]}"
    hospital = profile.name.replace("-", " ").title()
    sop_uid = _uid(profile.name, seed, "instance", index)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.preamble = b"\x00" * 128

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    date = study_date.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = (
        f"{8 + int(hrng.integers(0, 9)):02d}{int(hrng.integers(60)):02d}00"
    )
    ds.AcquisitionTime = ds.ContentTime = ds.StudyTime
    ds.AccessionNumber = f"ACC{seed % 1000:03d}{study:05d}"
    ds.Modality = "CT"
    ds.Manufacturer = profile.manufacturer
    ds.InstitutionName = f"{hospital} Hospital"
    ds.InstitutionAddress = f"{1 + study % 90} Harbour Road, {hospital} City"
    ds.ReferringPhysicianName = f"Doctor^{_GIVEN[(study + 3) % len(_GIVEN)]}"
    ds.StationName = f"{profile.name.upper()}-CT1"
    ds.StudyDescription = "CT ABDOMEN WITH CONTRAST"
    ds.SeriesDescription = "PORTAL VENOUS 5MM"
    ds.InstitutionalDepartmentName = "Radiology"
    ds.PerformingPhysicianName = f"Tech^{_GIVEN[(study + 5) % len(_GIVEN)]}"
    ds.OperatorsName = f"Operator^{_GIVEN[(study + 7) % len(_GIVEN)]}"
    ds.ManufacturerModelName = f"{profile.manufacturer} CT 64"
    ds.PatientName = patient
    ds.PatientID = f"{profile.name[:1].upper()}{seed % 100:02d}{study:06d}"
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = "F" if hrng.integers(2) else "M"
    ds.PatientAge = f"{(study_date - birth).days // 365:03d}Y"
    ds.PatientWeight = str(int(hrng.integers(50, 110)))
    # Sequences as scanners write them: identifiers inside items must go too.
    other_id = Dataset()
    other_id.PatientID = f"MRN{int(hrng.integers(10**6, 10**7))}"
    other_id.IssuerOfPatientID = f"{hospital} Hospital"
    ds.OtherPatientIDsSequence = Sequence([other_id])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
    study_ref.ReferencedSOPInstanceUID = _uid(profile.name, seed, "study-ref", study)
    ds.ReferencedStudySequence = Sequence([study_ref])
    if slice_in_study:  # the slice before it in the series, as a UID remapped consistently
        image_ref = Dataset()
        image_ref.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        image_ref.ReferencedSOPInstanceUID = _uid(profile.name, seed, "instance", index - 1)
        ds.ReferencedImageSequence = Sequence([image_ref])
    ds.BodyPartExamined = "ABDOMEN"
    ds.SliceThickness = "5.0"
    ds.KVP = "120"
    ds.DeviceSerialNumber = f"SN{zlib.crc32(profile.name.encode()) % 100000:05d}"
    ds.SoftwareVersions = "phantom-1"
    ds.ProtocolName = "ABD PV"
    ds.PatientPosition = "FFS"
    ds.StudyInstanceUID = _uid(profile.name, seed, "study", study)
    ds.SeriesInstanceUID = _uid(profile.name, seed, "series", study)
    ds.StudyID = f"{study + 1}"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = slice_in_study + 1
    ds.ImagePositionPatient = [-175.0, -175.0, -5.0 * slice_in_study]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = _uid(profile.name, seed, "frame", study)
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = -5.0 * slice_in_study
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [round(350.0 / pixels.shape[0], 4), round(350.0 / pixels.shape[1], 4)]
    ds.BitsAllocated = 16
    ds.BurnedInAnnotation = "NO"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    if profile.unsigned_storage:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
        ds.RescaleIntercept = str(HU_MIN)
        stored = (pixels.astype(np.int32) - HU_MIN).astype("<u2")
    else:
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
        ds.RescaleIntercept = "0"
        stored = pixels.astype("<i2")
    # A vendor block with identifying text, as real scanners write: private tags must go.
    block = ds.private_block(0x0009, "MEDCHAIN PHANTOM", create=True)
    block.add_new(0x01, "LO", f"{patient} {ds.PatientID}")
    ds.add_new(0x7FE00010, "OW", stored.tobytes())
    return ds
