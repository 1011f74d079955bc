"""Updates: ``local - base`` as a canonical safetensors file, its hash, and the checks on load.

An update carries the model's *federated* entries only: every floating-point entry of the
base state dict (parameters and floating buffers such as BatchNorm's running mean and
variance), minus the normalisation layers when the round keeps them local (FedBN). Integer
buffers (``num_batches_tracked``) never travel: the float32 format cannot carry them and
averaging a counter means nothing; after a round they keep the base model's value (see
``apply_delta``).

The file is exactly what ``safetensors.torch.save`` writes for the deltas with
``FIXED_METADATA``: compact JSON header with keys sorted, every tensor float32 and contiguous
in key order, header padded with spaces to 8 bytes. Because the header is then a function of
the layout alone, a checked file is the header followed by the update as one flat
little-endian float32 vector, which is what lets aggregation read it in chunks. The update
hash is the SHA-256 of the file's bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import nn

# One key each: safetensors writes metadata in Rust HashMap order, random between runs, so
# two keys would make its own output (and the model hash) differ from run to run.
FIXED_METADATA = {"format": "medchain.update/1"}
MODEL_METADATA = {"format": "medchain.model/1"}
HEADER_LIMIT = 16 << 20  # far above any real layout's header; refuses a hostile length
SCAN_ELEMENTS = 1 << 20  # float32 values read at once while checking a file
MAX_WEIGHT = 1 << 29  # 24-bit significand x 29-bit weight fits float64's 53 bits exactly

if sys.byteorder != "little":  # safetensors is little-endian; the flat reads assume native order
    raise ImportError("training.federated needs a little-endian machine")

StateDict = Mapping[str, torch.Tensor]


class UpdateRejected(ValueError):
    """An update that must not reach aggregation; ``reason`` is the code recorded on chain.

    Codes: ``format`` (not a canonical update file), ``keys`` (missing or unexpected
    entries), ``dtype`` (an entry is not float32), ``shape`` (an entry's shape differs from
    the base model's), ``nan`` (a NaN value), ``inf`` (an infinite value).
    """

    REASONS = ("format", "keys", "dtype", "shape", "nan", "inf")

    def __init__(self, reason: str, message: str) -> None:
        assert reason in self.REASONS, reason
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Layout:
    """The entries an update carries, sorted by key, with their shapes; all float32.

    Built from the base model's state dict, so every participant derives the same layout
    from the round's base model and training config.
    """

    entries: tuple[tuple[str, tuple[int, ...]], ...]
    numel: int = field(init=False)
    header: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        keys = [k for k, _ in self.entries]
        if keys != sorted(set(keys)):
            raise ValueError("layout entries must be unique and sorted by key")
        object.__setattr__(self, "numel", sum(math.prod(s) for _, s in self.entries))
        object.__setattr__(self, "header", _canonical_header(self.entries))

    @classmethod
    def of(cls, base: StateDict, *, local: Collection[str] = ()) -> Layout:
        """The federated entries of ``base``: floating entries not named in ``local``."""
        unknown = set(local) - set(base)
        if unknown:
            raise ValueError(f"local keys not in the base model: {sorted(unknown)[:5]}")
        entries = []
        for key in sorted(base):
            tensor = base[key]
            if not tensor.is_floating_point() or key in local:
                continue
            if tensor.dtype != torch.float32:
                raise ValueError(f"{key} is {tensor.dtype}: federated entries must be float32")
            entries.append((key, tuple(tensor.shape)))
        if not entries:
            raise ValueError("the base model has no federated entries")
        return cls(tuple(entries))

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.entries]

    @property
    def nbytes(self) -> int:
        return 4 * self.numel

    @property
    def data_offset(self) -> int:
        """Where the flat float32 vector starts in a canonical file (``header`` holds the
        8-byte length prefix too)."""
        return len(self.header)

    def spans(self) -> Iterator[tuple[str, tuple[int, ...], int, int]]:
        """(key, shape, start, stop) of each entry in the flat vector, in key order."""
        start = 0
        for key, shape in self.entries:
            stop = start + math.prod(shape)
            yield key, shape, start, stop
            start = stop


def _canonical_header(entries: tuple[tuple[str, tuple[int, ...]], ...]) -> bytes:
    # What safetensors 0.6 writes: compact JSON, metadata first, keys sorted, space padding.
    header: dict[str, object] = {"__metadata__": FIXED_METADATA}
    offset = 0
    for key, shape in entries:
        size = 4 * math.prod(shape)
        span = [offset, offset + size]
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": span}
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def normalisation_keys(model: nn.Module) -> frozenset[str]:
    """State-dict keys of the normalisation layers (BatchNorm, InstanceNorm, GroupNorm,
    LayerNorm): what FedBN keeps local, parameters and running statistics alike."""
    kinds = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    keys: set[str] = set()
    for name, module in model.named_modules():
        if isinstance(module, kinds):
            prefix = f"{name}." if name else ""
            keys.update(prefix + k for k in module.state_dict())
    return frozenset(keys)


def _nonfinite(where: str, nan: bool) -> UpdateRejected:
    if nan:
        return UpdateRejected("nan", f"{where} holds NaN values")
    return UpdateRejected("inf", f"{where} holds infinite values")


def _check_finite(values: np.ndarray, where: str) -> None:
    if not np.isfinite(values).all():
        raise _nonfinite(where, bool(np.isnan(values).any()))


def make_update(base: StateDict, local: StateDict, layout: Layout) -> dict[str, torch.Tensor]:
    """``local - base`` over the layout's entries, float32, in key order.

    Refuses, with the same reason codes as the loader, a local model that could not make a
    valid update (so a node finds out before it signs, not when others reject it).
    """
    missing = [k for k in layout.keys if k not in local]
    if missing:
        raise UpdateRejected("keys", f"the local model lacks {missing[:5]}")
    delta: dict[str, torch.Tensor] = {}
    for key, shape in layout.entries:
        value = local[key].detach().cpu()
        if value.dtype != torch.float32:
            raise UpdateRejected("dtype", f"{key} is {value.dtype}, not float32")
        if tuple(value.shape) != shape:
            raise UpdateRejected("shape", f"{key} has shape {tuple(value.shape)}, not {shape}")
        d = (value - base[key].detach().cpu()).contiguous()
        _check_finite(d.numpy(), key)
        delta[key] = d
    return delta


def _chunks(delta: Mapping[str, torch.Tensor], layout: Layout) -> Iterator[memoryview]:
    if list(delta) != layout.keys and sorted(delta) != layout.keys:
        raise ValueError("the delta's keys differ from the layout's")
    yield memoryview(layout.header)
    for key, shape in layout.entries:
        t = delta[key].detach().to("cpu", torch.float32).contiguous()
        if tuple(t.shape) != shape:
            raise ValueError(f"{key} has shape {tuple(t.shape)}, not {shape}")
        yield t.numpy().data.cast("B")


def update_bytes(delta: Mapping[str, torch.Tensor], layout: Layout) -> bytes:
    """The canonical file's bytes (the same as safetensors.torch.save with FIXED_METADATA)."""
    return b"".join(bytes(c) for c in _chunks(delta, layout))


def update_hash(data: bytes | memoryview) -> str:
    """The update hash: SHA-256 of the file's bytes, lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def write_update(delta: Mapping[str, torch.Tensor], layout: Layout, path: Path) -> str:
    """Write the canonical file (to a temporary name, then renamed) and return its hash."""
    digest = hashlib.sha256()
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as out:
            for chunk in _chunks(delta, layout):
                digest.update(chunk)
                out.write(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind
    return digest.hexdigest()


@dataclass(frozen=True)
class Update:
    """A checked update file as submitted: where it is, its hash and claimed sample count."""

    path: Path
    hash: str
    samples: int
    layout: Layout


def load_update(path: Path, layout: Layout, *, samples: int = 1) -> Update:
    """Check a file against the base model's layout and hash it; raise ``UpdateRejected``.

    Reads the file once, in chunks; nothing of it is kept in memory. Aggregation trusts
    what this returns, so NaN and infinities never reach a rule.
    """
    if samples < 1:
        raise ValueError(f"an update's sample count must be positive, not {samples}")
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        header = _read_header(f, layout, path)
        digest.update(header)
        size = os.fstat(f.fileno()).st_size
        if size != len(header) + layout.nbytes:
            raise UpdateRejected(
                "format",
                f"{path.name}: {size} bytes, expected "
                f"{len(header) + layout.nbytes} for this base model",
            )
        buf = np.empty(SCAN_ELEMENTS, dtype="<f4")
        bad: set[str] = set()
        remaining = layout.numel
        while remaining:
            n = min(remaining, SCAN_ELEMENTS)
            view = buf[:n].data.cast("B")
            if f.readinto(view) != 4 * n:
                raise UpdateRejected("format", f"{path.name} is truncated")
            digest.update(view)
            if not np.isfinite(buf[:n]).all():
                bad.add("nan" if np.isnan(buf[:n]).any() else "inf")
            remaining -= n
    if bad:  # NaN outranks infinity, whichever comes first in the file
        raise _nonfinite(path.name, "nan" in bad)
    return Update(path=path, hash=digest.hexdigest(), samples=samples, layout=layout)


def _read_header(f: BinaryIO, layout: Layout, path: Path) -> bytes:
    prefix = f.read(8)
    if len(prefix) != 8:
        raise UpdateRejected("format", f"{path.name} is too short to be an update")
    length = int.from_bytes(prefix, "little")
    if length > HEADER_LIMIT:
        raise UpdateRejected("format", f"{path.name} declares a {length}-byte header")
    header = prefix + f.read(length)
    if header == layout.header:
        return header
    try:
        parsed = json.loads(header[8:])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UpdateRejected("format", f"{path.name} has no readable safetensors header") from None
    if not isinstance(parsed, dict):
        raise UpdateRejected("format", f"{path.name} has no readable safetensors header")
    _diagnose(parsed, layout, path)
    raise UpdateRejected("format", f"{path.name} is not in the canonical update format")


def _diagnose(parsed: dict[str, object], layout: Layout, path: Path) -> None:
    """Name what differs between a non-canonical header and the layout, most specific first."""
    found = {k: v for k, v in parsed.items() if k != "__metadata__"}
    expected = dict(layout.entries)
    if set(found) != set(expected):
        missing = sorted(set(expected) - set(found))[:3]
        extra = sorted(set(found) - set(expected))[:3]
        raise UpdateRejected("keys", f"{path.name}: missing {missing}, unexpected {extra}")
    for key in layout.keys:
        info = found[key]
        if not isinstance(info, dict):
            raise UpdateRejected("format", f"{path.name}: {key} is not a tensor entry")
        if info.get("dtype") != "F32":
            raise UpdateRejected("dtype", f"{path.name}: {key} is {info.get('dtype')}, not F32")
        shape = info.get("shape")
        if not isinstance(shape, list) or tuple(shape) != expected[key]:
            raise UpdateRejected(
                "shape", f"{path.name}: {key} has shape {shape}, not {list(expected[key])}"
            )
    if parsed.get("__metadata__") != FIXED_METADATA:
        raise UpdateRejected("format", f"{path.name}: metadata is not {FIXED_METADATA}")


def delta_from_flat(flat: np.ndarray, layout: Layout) -> dict[str, torch.Tensor]:
    """Tensors over a flat float32 vector in layout order (views, no copy)."""
    tensor = torch.from_numpy(flat)
    return {key: tensor[a:b].view(shape) for key, shape, a, b in layout.spans()}


def apply_delta(
    base: StateDict,
    delta: Mapping[str, torch.Tensor],
    layout: Layout,
    *,
    local: StateDict | None = None,
) -> dict[str, torch.Tensor]:
    """The next model: ``base + delta`` on the layout's entries (float32, element by element,
    so bit-exact on any machine); every other entry copied from ``local`` when given (a
    FedBN node keeps its own normalisation layers) or else from ``base``.

    Integer buffers (``num_batches_tracked``) are never averaged: they take the base's value
    (or the node's own, through ``local``). Our models use BatchNorm's default momentum, for
    which that counter is bookkeeping only.
    """
    federated = set(layout.keys)
    rest = base if local is None else local
    out: dict[str, torch.Tensor] = {}
    for key in sorted(base):
        if key in federated:
            out[key] = base[key].detach().cpu() + delta[key]
        else:
            out[key] = rest[key].detach().cpu().clone()
    return out


def state_hash(state: StateDict) -> str:
    """SHA-256 of a whole state dict as safetensors (keys sorted, MODEL_METADATA): the hash a
    model is known by, integer buffers included."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in sorted(state.items())}
    return hashlib.sha256(save(tensors, metadata=MODEL_METADATA)).hexdigest()
