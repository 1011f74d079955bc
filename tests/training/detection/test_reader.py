"""The reader: packages to windowed tensors and xyxy boxes, augmentation, cache, split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_files
from pydicom.pixels import apply_modality_lut

from training.detection.reader import (
    Augmentation,
    DetectionSet,
    DiskCache,
    Instance,
    MemoryCache,
    ReaderError,
    Window,
    augment,
    read_instances,
    read_package,
    split_uids,
)
from training.ingest.annotations import Annotations, Box
from training.ingest.dataset import package_dataset
from training.ingest.dicom_ingest import IngestRefused, ingest_file
from training.ingest.phantoms import write_ct_dataset

DATASET = "0d7e1c55-6b1a-4c43-9d0e-6a4d2f1c9b21"
KEY = bytes(range(32))
SECRET = b"owner uid secret"
# Only files shipped inside the wheel: get_testdata_file(name) would hit the network.
SAMPLES = sorted(p for p in get_testdata_files() if Path(p).is_file())


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _expected(data: bytes, window: Window) -> np.ndarray:
    """pydicom's HU (its modality LUT) through the window: the oracle for the reader."""
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    low = window.center - window.width / 2
    return np.clip((hu - low) / window.width, 0.0, 1.0).astype(np.float32)


def _package(source: Path, annotations: Path, out: Path) -> list[Instance]:
    result = package_dataset(
        source, annotations, out, dataset_id=DATASET, uid_secret=SECRET, data_key=KEY
    )
    return read_package(out, data_key=KEY, dataset_id=DATASET, manifest=result.manifest)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Instance], Path]:
    folder = tmp_path_factory.mktemp("phantoms")
    annotations = write_ct_dataset(
        folder / "dicom", profile="hospital-a", count=10, seed=4, rows=64, cols=64
    )
    return _package(folder / "dicom", annotations, folder / "pkg"), annotations


def test_it_reads_the_pydicom_ct_sample_through_a_package(tmp_path: Path) -> None:
    ct = next(p for p in SAMPLES if p.endswith("CT_small.dcm"))
    (tmp_path / "src").mkdir()
    shutil.copy(ct, tmp_path / "src" / "CT_small.dcm")
    uid = str(pydicom.dcmread(ct, stop_before_pixels=True).SOPInstanceUID)
    annotations = tmp_path / "annotations.json"
    box = Box(x0=30, y0=40, x1=70, y1=64)
    annotations.write_bytes(Annotations(instances={uid: (box,)}).to_json())
    (instance,) = _package(tmp_path / "src", annotations, tmp_path / "pkg")
    assert (instance.rows, instance.cols, instance.boxes) == (128, 128, (box,))

    window = Window(center=200.0, width=2200.0)  # CT_small's HU run from -896 to 1167
    native = DetectionSet([instance], window=window, image_size=128)
    image, target = native.sample(0)
    assert image.shape == (1, 128, 128) and image.dtype == torch.float32
    assert instance.data is not None
    np.testing.assert_allclose(image[0].numpy(), _expected(instance.data, window), atol=1e-6)
    assert float(image.min()) > 0.0 and float(image.max()) < 1.0  # nothing clipped here
    assert target["boxes"].tolist() == [[30.0, 40.0, 70.0, 64.0]]
    assert target["labels"].tolist() == [1]

    half, half_target = DetectionSet([instance], window=window, image_size=64).sample(0)
    assert half.shape == (1, 64, 64)
    assert half_target["boxes"].tolist() == [[15.0, 20.0, 35.0, 32.0]]
    assert abs(float(half.mean()) - float(image.mean())) < 1e-3


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_it_reads_every_pydicom_ct_sample_that_ingest_accepts() -> None:
    read = 0
    window = Window()
    for path in SAMPLES:
        try:
            ingested = ingest_file(path, uid_secret=SECRET)
        except IngestRefused:
            continue
        if ingested.modality != "CT":
            continue
        (instance,) = read_instances([ingested.data], Annotations().to_json())
        size = max(instance.rows, instance.cols)
        image, target = DetectionSet([instance], image_size=size).sample(0)
        expected = _expected(ingested.data, window)
        padded = np.zeros((size, size), np.float32)
        padded[: instance.rows, : instance.cols] = expected
        np.testing.assert_allclose(image[0].numpy(), padded, atol=1e-6, err_msg=path)
        assert target["boxes"].shape == (0, 4)
        read += 1
    assert read >= 5


def test_it_reads_phantom_packages_with_their_boxes_and_hu(phantoms) -> None:
    instances, annotations_path = phantoms
    original = json.loads(annotations_path.read_bytes())["instances"]
    expected_boxes = sorted(
        (b["x0"], b["y0"], b["x1"], b["y1"]) for v in original.values() for b in v["boxes"]
    )
    window = Window(center=40.0, width=400.0)
    dataset = DetectionSet(instances, window=window, image_size=64)
    read_boxes = []
    for index, instance in enumerate(instances):
        image, target = dataset.sample(index)
        assert instance.data is not None
        np.testing.assert_allclose(image[0].numpy(), _expected(instance.data, window), atol=1e-6)
        read_boxes += [tuple(int(v) for v in box) for box in target["boxes"].tolist()]
        assert target["labels"].tolist() == [1] * len(instance.boxes)
    assert sorted(read_boxes) == expected_boxes and expected_boxes
    assert [i.uid for i in instances] == sorted(i.uid for i in instances)


def test_it_windows_hu_to_the_unit_interval() -> None:
    hu = np.array([-1000.0, -160.0, 40.0, 140.0, 240.0, 3000.0])
    assert Window(40, 400).apply(hu).tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(ReaderError, match="width"):
        Window(40, 0)


def test_it_refuses_a_label_the_config_does_not_name(phantoms) -> None:
    instances, _ = phantoms
    with pytest.raises(ReaderError, match="label 'lesion' is not one of"):
        DetectionSet(instances, classes=("nodule",))


def _rectangle_image(box: tuple[int, int, int, int], size: int = 48) -> torch.Tensor:
    image = torch.zeros(1, size, size)
    x0, y0, x1, y1 = box
    image[0, y0:y1, x0:x1] = 1.0
    return image


def _bounds(image: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(image[0], as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def test_its_flips_and_shifts_move_boxes_with_the_pixels() -> None:
    augmentation = Augmentation(hflip=0.5, vflip=0.5, max_shift=6)
    box = (9, 14, 20, 31)
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        image, boxes, keep = augment(
            _rectangle_image(box), torch.tensor([box], dtype=torch.float32), augmentation, rng
        )
        assert keep.tolist() == [True]
        assert boxes.tolist() == [_bounds(image)]
        seen.add(tuple(boxes[0].tolist()))
    assert len(seen) > 20  # flips and shifts really happened


def test_its_shifts_clip_boxes_at_the_edge_and_drop_those_pushed_out() -> None:
    boxes = torch.tensor([[0.0, 10.0, 4.0, 20.0], [2.0, 30.0, 12.0, 40.0]])
    image = _rectangle_image((2, 30, 12, 40))
    shifted = None
    for seed in range(200):  # find a draw shifting left by 5 or more, no flips
        rng = np.random.default_rng(seed)
        h, v = rng.random(2)
        dx, _ = rng.integers(-6, 7, 2)
        if dx <= -5:
            shifted = augment(
                image, boxes, Augmentation(hflip=0, max_shift=6), np.random.default_rng(seed)
            )
            break
    assert shifted is not None
    out_image, out_boxes, keep = shifted
    assert keep.tolist() == [False, True]
    assert out_boxes[0, 0] == 0.0 and out_boxes.tolist() == [_bounds(out_image)]


def test_its_augmentation_is_fixed_by_seed_epoch_and_instance(phantoms) -> None:
    instances, _ = phantoms
    augmentation = Augmentation(hflip=0.5, vflip=0.5, max_shift=4)
    one = DetectionSet(instances, image_size=64, augmentation=augmentation, seed=3)
    two = DetectionSet(instances, image_size=64, augmentation=augmentation, seed=3)
    for index in range(len(instances)):
        a, b = one.sample(index, epoch=2), two.sample(index, epoch=2)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    differs = [
        not torch.equal(one.sample(i, epoch=2)[0], one.sample(i, epoch=3)[0])
        for i in range(len(instances))
    ]
    assert sum(differs) >= len(instances) // 2


def test_it_decodes_each_instance_once_then_reads_the_cache(phantoms, tmp_path: Path) -> None:
    instances, _ = phantoms
    memory = MemoryCache()
    dataset = DetectionSet(instances, image_size=64, cache=memory, augmentation=Augmentation())
    train, validation = dataset.split(seed=0, validation_fraction=0.3)
    for epoch in range(3):
        for part in (train, validation):
            for index in range(len(part)):
                part.sample(index, epoch)
        assert dataset.decodes == len(instances) == len(memory)

    disk = DiskCache(tmp_path / "cache")
    first = DetectionSet(instances, image_size=64, cache=disk)
    images = [first.sample(i)[0] for i in range(len(instances))]
    assert first.decodes == len(instances)
    again = DetectionSet(instances, image_size=64, cache=DiskCache(tmp_path / "cache"))
    assert all(torch.equal(again.sample(i)[0], images[i]) for i in range(len(instances)))
    assert again.decodes == 0  # another process resuming reads the files
    other_window = DetectionSet(instances, image_size=64, cache=disk, window=Window(0, 2000))
    other_window.sample(0)
    assert other_window.decodes == 1  # a different window is a different tensor


def test_its_split_is_fixed_by_seed_and_uid_and_stable_when_instances_are_added() -> None:
    uids = [f"2.25.{n}" for n in range(1000)]
    train, validation = split_uids(uids, seed=7, validation_fraction=0.2)
    assert sorted(train + validation) == sorted(uids) and not set(train) & set(validation)
    assert 150 <= len(validation) <= 250
    more_train, more_validation = split_uids(
        uids + [f"1.2.{n}" for n in range(300)], seed=7, validation_fraction=0.2
    )
    assert set(validation) <= set(more_validation) and set(train) <= set(more_train)
    assert split_uids(uids, seed=8, validation_fraction=0.2)[1] != validation
    with pytest.raises(ReaderError, match="validation_fraction"):
        split_uids(uids, seed=7, validation_fraction=1.0)


def test_its_validation_split_is_never_augmented(phantoms) -> None:
    instances, _ = phantoms
    dataset = DetectionSet(instances, image_size=64, augmentation=Augmentation(hflip=1.0))
    _, validation = dataset.split(seed=1, validation_fraction=0.5)
    plain = DetectionSet(instances, image_size=64)
    by_uid = {i.uid: n for n, i in enumerate(instances)}
    assert len(validation)
    for index, instance in enumerate(validation.instances):
        assert torch.equal(validation.sample(index, 5)[0], plain.sample(by_uid[instance.uid])[0])
