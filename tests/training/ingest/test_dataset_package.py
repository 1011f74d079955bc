from __future__ import annotations

import hashlib
import json
import os
import random
import tracemalloc
from pathlib import Path

import pydicom
import pytest

from training.crypto import RECORD_SIZE
from training.ingest.annotations import AnnotationError, Annotations, parse_annotations
from training.ingest.dataset import (
    ANNOTATIONS_NAME,
    MANIFEST_NAME,
    ChunkMismatch,
    PackageError,
    RefusedFiles,
    chunk_file_name,
    manifest_bytes,
    manifest_sha256,
    open_package,
    package_dataset,
)
from training.ingest.phantoms import write_ct_dataset

DATASET = "7d0c1f9e-2b3a-4c5d-8e6f-0a1b2c3d4e5f"
SECRET = b"owner uid secret"
KEY = bytes(range(32))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("phantoms")
    annotations = write_ct_dataset(
        folder / "dicom", profile="hospital-a", count=8, seed=3, rows=64, cols=64
    )
    return folder / "dicom", annotations


def _package(source: Path, annotations: Path, out: Path, **kwargs):
    kwargs.setdefault("dataset_id", DATASET)
    kwargs.setdefault("uid_secret", SECRET)
    kwargs.setdefault("data_key", KEY)
    return package_dataset(source, annotations, out, **kwargs)


def test_it_round_trips_a_phantom_dataset(phantoms, tmp_path):
    source, annotations_path = phantoms
    calls: list[tuple[int, int]] = []
    result = _package(
        source, annotations_path, tmp_path / "pkg", progress=lambda d, t: calls.append((d, t))
    )

    assert calls == [(i, 8) for i in range(1, 9)]
    assert (result.instances, result.modality, result.data_key) == (8, "CT", KEY)
    files = sorted(p.name for p in (tmp_path / "pkg").iterdir())
    assert files == [chunk_file_name(c.index) for c in result.chunks] + [MANIFEST_NAME]
    assert (tmp_path / "pkg" / MANIFEST_NAME).read_bytes() == manifest_bytes(result.manifest)
    assert result.manifest_sha256 == hashlib.sha256(manifest_bytes(result.manifest)).hexdigest()

    entries = dict(
        open_package(tmp_path / "pkg", data_key=KEY, dataset_id=DATASET, manifest=result.manifest)
    )
    sizes = {}
    for name, data in entries.items():
        if name != ANNOTATIONS_NAME:
            ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
            assert name == f"instances/{ds.SOPInstanceUID}.dcm"
            assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == ""
            sizes[str(ds.SOPInstanceUID)] = (ds.Rows, ds.Columns)
    assert len(sizes) == 8
    annotations = parse_annotations(entries[ANNOTATIONS_NAME], sizes)
    assert hashlib.sha256(entries[ANNOTATIONS_NAME]).hexdigest() == result.annotation_sha256
    original = json.loads(annotations_path.read_bytes())["instances"]
    assert result.boxes == sum(len(b) for b in annotations.instances.values())
    assert result.boxes == sum(len(v["boxes"]) for v in original.values()) > 0
    assert not set(original) & set(annotations.instances)  # UIDs were remapped


def test_it_aborts_on_a_refused_file_and_leaves_nothing(phantoms, tmp_path):
    source, annotations_path = phantoms
    bad = _copy_dicom(source, tmp_path / "src")
    (bad / "zz_notes.txt").write_text("not an image")
    ds = pydicom.dcmread(bad / "slice_0001.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(bad / "slice_0001.dcm", enforce_file_format=True)
    out = tmp_path / "pkg"

    with pytest.raises(RefusedFiles) as err:
        _package(bad, annotations_path, out)

    assert [r.path for r in err.value.refused] == ["slice_0001.dcm", "zz_notes.txt"]
    assert "slice_0001.dcm: Burned In Annotation (0028,0301) is YES" in str(err.value)
    assert "zz_notes.txt: not a DICOM Part 10 file" in str(err.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]  # no staging folder left either


def test_it_can_skip_refused_files_when_asked(phantoms, tmp_path):
    source, annotations_path = phantoms
    src = _copy_dicom(source, tmp_path / "src")
    (src / "zz_notes.txt").write_text("not an image")
    result = _package(src, annotations_path, tmp_path / "pkg", skip_refused=True)
    assert result.instances == 8
    assert [r.path for r in result.refused] == ["zz_notes.txt"]


def test_it_refuses_annotations_for_unknown_instances_and_leaves_nothing(phantoms, tmp_path):
    src = _copy_dicom(phantoms[0], tmp_path / "src")
    wrong = tmp_path / "wrong.json"
    wrong.write_bytes(Annotations(instances={"1.2.3.4": ()}).to_json())
    out = tmp_path / "pkg"
    out.mkdir()  # an empty out_dir is allowed and stays empty on failure
    with pytest.raises(AnnotationError, match="'1.2.3.4': not an image of this dataset"):
        _package(src, wrong, out)
    assert not list(out.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg", "src", "wrong.json"]


def test_it_refuses_a_non_empty_out_dir(phantoms, tmp_path):
    source, annotations_path = phantoms
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "old").write_text("x")
    with pytest.raises(PackageError, match="not an empty folder"):
        _package(source, annotations_path, tmp_path / "pkg")


def _big_package(tmp_path: Path, phantoms) -> tuple[Path, dict]:
    source, annotations_path = phantoms
    src = _replicate(source, tmp_path / "src", copies=20)  # > 1 MiB: several chunks
    annotations = src / ANNOTATIONS_NAME
    result = _package(src, annotations, tmp_path / "pkg")
    assert len(result.chunks) >= 2
    return tmp_path / "pkg", result.manifest


@pytest.mark.parametrize("index", [0, -1])
def test_it_names_a_tampered_chunk_and_decrypts_nothing(phantoms, tmp_path, index):
    pkg, manifest = _big_package(tmp_path, phantoms)
    chunk = manifest["chunks"][index]["index"]
    path = pkg / chunk_file_name(chunk)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 1
    path.write_bytes(bytes(raw))

    with pytest.raises(ChunkMismatch, match=rf"chunk {chunk} \({path.name}\): SHA-256") as err:
        open_package(pkg, data_key=KEY, dataset_id=DATASET, manifest=manifest)
    assert err.value.index == chunk


def test_it_names_a_missing_or_extra_chunk(phantoms, tmp_path):
    pkg, manifest = _big_package(tmp_path, phantoms)
    last = len(manifest["chunks"]) - 1
    (pkg / chunk_file_name(last)).rename(pkg / chunk_file_name(last + 1))
    with pytest.raises(ChunkMismatch, match=rf"chunk {last} .*: the file is missing"):
        open_package(pkg, data_key=KEY, dataset_id=DATASET, manifest=manifest)
    (pkg / chunk_file_name(last + 1)).rename(pkg / chunk_file_name(last))
    (pkg / chunk_file_name(last + 1)).write_bytes(b"x" * 64)
    with pytest.raises(PackageError, match=f"not in the manifest: {chunk_file_name(last + 1)}"):
        open_package(pkg, data_key=KEY, dataset_id=DATASET, manifest=manifest)


def test_it_refuses_the_wrong_dataset_or_key(phantoms, tmp_path):
    pkg, manifest = _big_package(tmp_path, phantoms)
    with pytest.raises(PackageError, match="is for dataset"):
        open_package(pkg, data_key=KEY, dataset_id="other", manifest=manifest)
    with pytest.raises(PackageError, match="chunk 0 does not authenticate"):
        list(open_package(pkg, data_key=bytes(32), dataset_id=DATASET, manifest=manifest))


def test_it_cuts_chunk_files_at_record_boundaries(phantoms, tmp_path):
    pkg, manifest = _big_package(tmp_path, phantoms)
    sizes = [(pkg / chunk_file_name(c["index"])).stat().st_size for c in manifest["chunks"]]
    assert sizes[:-1] == [RECORD_SIZE] * (len(sizes) - 1)
    assert sizes == [c["size"] for c in manifest["chunks"]]
    assert sum(sizes) == manifest["ciphertext_size"]


def test_it_writes_a_deterministic_manifest_given_key_seed_and_nonces(
    phantoms, tmp_path, monkeypatch
):
    source, annotations_path = phantoms

    def run(name: str, *, fixed_nonces: bool) -> dict:
        if fixed_nonces:
            rng = random.Random(7)
            monkeypatch.setattr(
                "training.crypto.os.urandom", lambda n: bytes(rng.getrandbits(8) for _ in range(n))
            )
        else:
            monkeypatch.setattr("training.crypto.os.urandom", os.urandom)
        return _package(source, annotations_path, tmp_path / name).manifest

    first, second = run("a", fixed_nonces=True), run("b", fixed_nonces=True)
    assert manifest_bytes(first) == manifest_bytes(second)
    assert manifest_sha256(first) == manifest_sha256(second)
    assert (
        manifest_bytes(first) == json.dumps(first, sort_keys=True, separators=(",", ":")).encode()
    )
    # Real nonces are random: only the chunk hashes change between runs.
    third = run("c", fixed_nonces=False)
    assert {k: v for k, v in third.items() if k != "chunks"} == {
        k: v for k, v in first.items() if k != "chunks"
    }
    assert third["chunks"] != first["chunks"]


def test_it_packages_50_mb_without_memory_growing(tmp_path):
    seed = tmp_path / "seed"
    write_ct_dataset(seed, profile="hospital-b", count=2, seed=5, rows=512, cols=512)
    small = _replicate(seed, tmp_path / "small", copies=10)  # ~10 MB
    large = _replicate(seed, tmp_path / "large", copies=50)  # ~52 MB

    def peak(source: Path, out: Path) -> int:
        tracemalloc.start()
        try:
            result = _package(source, source / ANNOTATIONS_NAME, out)
            return tracemalloc.get_traced_memory()[1], result
        finally:
            tracemalloc.stop()

    small_peak, _ = peak(small, tmp_path / "small-pkg")
    large_peak, result = peak(large, tmp_path / "large-pkg")
    assert result.ciphertext_size > 50_000_000
    # One DICOM file (~0.5 MB) and one chunk (1 MiB) in flight, a few copies of each.
    assert large_peak < 8 * 2**20
    assert large_peak - small_peak < 2**19


def _copy_dicom(source: Path, out: Path) -> Path:
    out.mkdir()
    for p in source.glob("*.dcm"):
        (out / p.name).write_bytes(p.read_bytes())
    return out


def _replicate(seed: Path, out: Path, *, copies: int) -> Path:
    """``copies`` of every slice in ``seed`` under fresh UIDs, with their boxes."""
    out.mkdir(parents=True)
    boxes = json.loads((seed / ANNOTATIONS_NAME).read_bytes())["instances"]
    instances = {}
    for path in sorted(seed.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        original = str(ds.SOPInstanceUID)
        for k in range(copies):
            uid = f"{original}.{k + 1}"
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.save_as(out / f"{path.stem}_{k:03d}.dcm", enforce_file_format=True)
            instances[uid] = boxes[original]
    (out / ANNOTATIONS_NAME).write_text(
        json.dumps({"format": "medchain-annotations/1", "instances": instances})
    )
    return out
