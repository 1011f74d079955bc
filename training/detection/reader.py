"""The node's reader over a decrypted dataset package: DICOM to windowed tensors and boxes.

An instance's pixels go through ``read_hu`` (Rescale Slope and Intercept), the
config's window (centre, width) to [0, 1], and a resize that fits the longer
side to the model's square ``image_size`` (the rest padded with 0, below and to
the right), as a float32 tensor ``1 x S x S``. Boxes go from DESIGN's integer
half-open pixel boxes to torchvision's float ``xyxy``: a pixel ``i`` covers
``[i, i + 1)``, so ``(x0, y0, x1, y1)`` carry over as they are, scaled with the
image.

Decoding is the expensive part; each instance is decoded once, on its first
use, into a cache keyed by the SHA-256 of its DICOM bytes and the settings that
shape the tensor, so no later epoch (nor, with a :class:`DiskCache`, a resumed
process) decodes DICOM again. Augmentation (flips, small shifts) runs on the
cached tensor, drawn from a generator seeded by ``(seed, epoch, instance)``.
The train/validation split depends on ``(seed, UID)`` alone, so adding
instances never moves an old one across. See docs/detection.md.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pydicom
import torch
import torch.nn.functional as F

from training.ingest.annotations import Annotations, Box, parse_annotations
from training.ingest.dataset import ANNOTATIONS_NAME, INSTANCE_PREFIX, open_package
from training.ingest.pixels import read_hu

Target = dict[str, torch.Tensor]
CACHE_FORMAT = "medchain-decoded/1"  # part of every cache key: bump it when decoding changes


class ReaderError(ValueError):
    """A package or setting the reader cannot turn into training data; the message says why."""


@dataclass(frozen=True)
class Window:
    """A CT window in HU: ``center ± width / 2`` maps to [0, 1], the rest is clipped."""

    center: float = 40.0  # soft tissue / abdomen
    width: float = 400.0

    def __post_init__(self) -> None:
        if not self.width > 0:
            raise ReaderError(f"window width must be positive, not {self.width}")

    def apply(self, hu: np.ndarray) -> np.ndarray:
        low = np.float32(self.center - self.width / 2)
        out = (hu.astype(np.float32) - low) / np.float32(self.width)
        return np.clip(out, 0.0, 1.0, out=out)


@dataclass(frozen=True)
class Augmentation:
    """Random flips and an integer shift of at most ``max_shift`` pixels on each axis.

    Boxes follow the image exactly; a box shifted partly out is clipped to the
    image, one shifted wholly out is dropped.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    max_shift: int = 0

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ReaderError(f"augmentation {name} must be a probability in [0, 1], not {p}")
        if self.max_shift < 0:
            raise ReaderError(f"augmentation max_shift must be >= 0, not {self.max_shift}")

    @property
    def enabled(self) -> bool:
        return self.hflip > 0 or self.vflip > 0 or self.max_shift > 0


def augment(
    image: torch.Tensor, boxes: torch.Tensor, augmentation: Augmentation, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The augmented image, its boxes, and which of the input boxes survived (a bool mask).

    Draws exactly three numbers from ``rng`` whatever the settings, so one
    setting never shifts the draws of another.
    """
    hflip, vflip = rng.random(2)
    dx, dy = (int(v) for v in rng.integers(-augmentation.max_shift, augmentation.max_shift + 1, 2))
    height, width = image.shape[-2:]
    boxes = boxes.clone()
    if hflip < augmentation.hflip:
        image = image.flip(-1)
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    if vflip < augmentation.vflip:
        image = image.flip(-2)
        boxes[:, [1, 3]] = height - boxes[:, [3, 1]]
    if dx or dy:
        image = _shift(image, dx, dy)
        boxes += torch.tensor([dx, dy, dx, dy], dtype=boxes.dtype)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return image, boxes[keep], keep


def _shift(image: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate by ``(dx, dy)`` pixels, filling with 0 (below the window)."""
    height, width = image.shape[-2:]
    out = torch.zeros_like(image)
    src_x, dst_x = slice(max(-dx, 0), width - max(dx, 0)), slice(max(dx, 0), width - max(-dx, 0))
    src_y, dst_y = slice(max(-dy, 0), height - max(dy, 0)), slice(max(dy, 0), height - max(-dy, 0))
    out[..., dst_y, dst_x] = image[..., src_y, src_x]
    return out


class DecodedCache(Protocol):
    """Where decoded tensors live between epochs, keyed by :func:`cache_key`."""

    def get(self, key: str) -> torch.Tensor | None: ...

    def put(self, key: str, image: torch.Tensor) -> None: ...


class MemoryCache:
    """Decoded tensors in this process's memory: one node run, no files."""

    def __init__(self) -> None:
        self._images: dict[str, torch.Tensor] = {}

    def get(self, key: str) -> torch.Tensor | None:
        return self._images.get(key)

    def put(self, key: str, image: torch.Tensor) -> None:
        self._images[key] = image

    def __len__(self) -> int:
        return len(self._images)


class DiskCache:
    """Decoded tensors as ``.npy`` files under a node's own cache folder.

    They survive the process, so a worker that resumes after a kill does not
    decode again. Holds decrypted pixels: the folder must be as private as the
    node's keystore. Files are written whole (temporary file, then rename).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> torch.Tensor | None:
        try:
            array = np.load(self._path(key), allow_pickle=False)
        except (FileNotFoundError, ValueError, EOFError):
            return None  # absent or torn: decode again
        return torch.from_numpy(array)

    def put(self, key: str, image: torch.Tensor) -> None:
        path = self._path(key)
        path.parent.mkdir(exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, image.numpy(), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def cache_key(instance_sha256: str, *, window: Window, image_size: int) -> str:
    """Content hash of the instance plus everything that shapes its decoded tensor."""
    spec = f"{CACHE_FORMAT}|{instance_sha256}|{window.center!r}|{window.width!r}|{image_size}"
    return hashlib.sha256(spec.encode()).hexdigest()


@dataclass
class Instance:
    """One image of a package: its UID, content hash, boxes and DICOM bytes."""

    uid: str
    sha256: str
    rows: int
    cols: int
    boxes: tuple[Box, ...]
    data: bytes | None = field(default=None, repr=False)


def read_package(
    folder: str | Path, *, data_key: bytes, dataset_id: str, manifest: Mapping[str, Any]
) -> list[Instance]:
    """Decrypt a package (``open_package`` checks every chunk first) into its instances.

    Sorted by UID, so the order does not depend on how the package was written.
    """
    raw_annotations: bytes | None = None
    found: dict[str, Instance] = {}
    for name, data in open_package(
        folder, data_key=data_key, dataset_id=dataset_id, manifest=manifest
    ):
        if name == ANNOTATIONS_NAME:
            raw_annotations = data
        elif name.startswith(INSTANCE_PREFIX):
            instance = _instance(data)
            found[instance.uid] = instance
    assert raw_annotations is not None  # open_package raises when it is missing
    sizes = {uid: (i.rows, i.cols) for uid, i in found.items()}
    annotations = parse_annotations(raw_annotations, sizes)
    return [_with_boxes(found[uid], annotations) for uid in sorted(found)]


def read_instances(sources: Iterable[bytes | str | Path], annotations: bytes) -> list[Instance]:
    """Instances from ingested DICOM files (bytes or paths) and their annotation file."""
    found: dict[str, Instance] = {}
    for source in sources:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        instance = _instance(data)
        found[instance.uid] = instance
    parsed = parse_annotations(annotations, {u: (i.rows, i.cols) for u, i in found.items()})
    return [_with_boxes(found[uid], parsed) for uid in sorted(found)]


def _instance(data: bytes) -> Instance:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return Instance(
        uid=str(ds.SOPInstanceUID),
        sha256=hashlib.sha256(data).hexdigest(),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        boxes=(),
        data=data,
    )


def _with_boxes(instance: Instance, annotations: Annotations) -> Instance:
    instance.boxes = annotations.boxes(instance.uid)
    return instance


def validation_draw(seed: int, uid: str) -> float:
    """A number in [0, 1) fixed by ``(seed, uid)``: below the fraction means validation."""
    digest = hashlib.sha256(f"medchain-split/1|{seed}|{uid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_uids(
    uids: Iterable[str], *, seed: int, validation_fraction: float
) -> tuple[list[str], list[str]]:
    """(train, validation) UIDs; each UID's side depends on ``(seed, uid)`` alone."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ReaderError(f"validation_fraction must be in [0, 1), not {validation_fraction}")
    train: list[str] = []
    validation: list[str] = []
    for uid in uids:
        (validation if validation_draw(seed, uid) < validation_fraction else train).append(uid)
    return train, validation


def _uid_number(uid: str) -> int:
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big")


class _Decoder:
    """Shared by a set and its splits: the cache, the settings, the count of DICOM decodes."""

    def __init__(self, *, window: Window, image_size: int, cache: DecodedCache) -> None:
        self.window = window
        self.image_size = image_size
        self.cache = cache
        self.decodes = 0

    def image(self, instance: Instance) -> tuple[torch.Tensor, float]:
        """The cached ``1 x S x S`` tensor and the scale from pixel to tensor coordinates."""
        scale = self.image_size / max(instance.rows, instance.cols)
        key = cache_key(instance.sha256, window=self.window, image_size=self.image_size)
        image = self.cache.get(key)
        if image is None:
            if instance.data is None:
                raise ReaderError(f"instance {instance.uid}: not in the cache and no DICOM bytes")
            image = self._decode(instance.data, instance.rows, instance.cols)
            self.cache.put(key, image)
        return image, scale

    def _decode(self, data: bytes, rows: int, cols: int) -> torch.Tensor:
        self.decodes += 1
        hu = read_hu(data)[0]  # the first frame: boxes are per instance, CT slices have one
        image = torch.from_numpy(self.window.apply(hu))[None, None]
        size = self.image_size
        if (rows, cols) != (size, size):
            scale = size / max(rows, cols)
            fitted = (max(1, round(rows * scale)), max(1, round(cols * scale)))
            if fitted != (rows, cols):
                image = F.interpolate(image, size=fitted, mode="bilinear", antialias=True)
            image = F.pad(image, (0, size - fitted[1], 0, size - fitted[0]))
        return image[0].contiguous()


class DetectionSet:
    """Training samples over a package's instances: ``sample(index, epoch) -> (image, target)``.

    ``classes`` names the lesion labels in order; a box's label ``classes[k]``
    becomes target label ``k + 1`` (0 is torchvision's background).
    """

    def __init__(
        self,
        instances: Sequence[Instance],
        *,
        classes: Sequence[str] = ("lesion",),
        window: Window | None = None,
        image_size: int = 256,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        cache: DecodedCache | None = None,
        _decoder: _Decoder | None = None,
    ) -> None:
        self.instances = list(instances)
        self.classes = tuple(classes)
        self.augmentation = augmentation or Augmentation(hflip=0.0)
        self.seed = seed
        self._decoder = _decoder or _Decoder(
            window=window or Window(),
            image_size=image_size,
            cache=cache if cache is not None else MemoryCache(),
        )
        self._labels = {name: k + 1 for k, name in enumerate(self.classes)}
        for instance in self.instances:
            for box in instance.boxes:
                if box.label not in self._labels:
                    raise ReaderError(
                        f"instance {instance.uid}: label {box.label!r} is not one of the "
                        f"config's classes {list(self.classes)}"
                    )

    def __len__(self) -> int:
        return len(self.instances)

    @property
    def decodes(self) -> int:
        """DICOM decodes so far, by this set and every split sharing its cache."""
        return self._decoder.decodes

    @property
    def image_size(self) -> int:
        return self._decoder.image_size

    def sample(self, index: int, epoch: int = 0) -> tuple[torch.Tensor, Target]:
        """Image ``index`` of the set, augmented for ``epoch`` (the same every time asked)."""
        instance = self.instances[index]
        image, scale = self._decoder.image(instance)
        boxes = torch.tensor(
            [[b.x0, b.y0, b.x1, b.y1] for b in instance.boxes], dtype=torch.float32
        ).reshape(-1, 4)
        if scale != 1.0:
            boxes = boxes * scale
        labels = torch.tensor([self._labels[b.label] for b in instance.boxes], dtype=torch.int64)
        if self.augmentation.enabled:
            rng = np.random.default_rng([self.seed, epoch, _uid_number(instance.uid)])
            image, boxes, keep = augment(image, boxes, self.augmentation, rng)
            labels = labels[keep]
        return image, {"boxes": boxes, "labels": labels}

    def evaluation_view(self) -> DetectionSet:
        """The same instances with no augmentation, for scoring."""
        return self._view(self.instances, Augmentation(hflip=0.0))

    def split(self, *, seed: int, validation_fraction: float) -> tuple[DetectionSet, DetectionSet]:
        """(train, validation) sets; validation is never augmented. Both share the cache."""
        by_uid = {i.uid: i for i in self.instances}
        train, validation = split_uids(by_uid, seed=seed, validation_fraction=validation_fraction)
        return (
            self._view([by_uid[u] for u in train], self.augmentation),
            self._view([by_uid[u] for u in validation], Augmentation(hflip=0.0)),
        )

    def _view(self, instances: Sequence[Instance], augmentation: Augmentation) -> DetectionSet:
        return DetectionSet(
            instances,
            classes=self.classes,
            augmentation=augmentation,
            seed=self.seed,
            _decoder=self._decoder,
        )


__all__ = [
    "Augmentation",
    "DecodedCache",
    "DetectionSet",
    "DiskCache",
    "Instance",
    "MemoryCache",
    "ReaderError",
    "Target",
    "Window",
    "augment",
    "cache_key",
    "read_instances",
    "read_package",
    "split_uids",
    "validation_draw",
]
