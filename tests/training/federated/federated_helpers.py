"""Updates on disk for the federated tests: a small model's layout and random deltas."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.federated.updates import Layout, Update, delta_from_flat, load_update, write_update


class SmallNet(nn.Module):
    """Convolution, BatchNorm and a linear head: every kind of entry an update meets."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * 9, 70)


def small_base(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return dict(SmallNet().state_dict())


def write_updates(
    directory: Path,
    layout: Layout,
    flats: Sequence[np.ndarray],
    samples: Sequence[int] | None = None,
) -> list[Update]:
    """Each flat float32 vector written as an update file and checked back."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i, flat in enumerate(flats):
        path = directory / f"update-{i}.safetensors"
        delta = delta_from_flat(np.ascontiguousarray(flat, dtype=np.float32), layout)
        write_update(delta, layout, path)
        out.append(load_update(path, layout, samples=1 if samples is None else samples[i]))
    return out


def random_flats(layout: Layout, count: int, seed: int, scale: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(layout.numel) * scale).astype(np.float32) for _ in range(count)]
