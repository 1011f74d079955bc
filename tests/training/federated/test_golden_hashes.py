"""Every rule's aggregate hash on fixed seeded updates, as computed before aggregation was
made faster (commit 3430825): a node running a later version must still agree bit for bit
with one running that code, so these hashes never change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.training.federated.federated_helpers import random_flats, small_base, write_updates
from training.federated.aggregate import BLOCK, DEFAULT_CHUNK, aggregate
from training.federated.updates import Layout, Update

SEED = bytes(range(32))

CASES: dict[str, dict[str, Any]] = {
    "fedavg": {"rule": "fedavg"},
    "fedavg_capped_clipped": {"rule": "fedavg", "sample_cap": 40, "clip_norm": 60.0},
    "median": {"rule": "median"},
    "median_clipped": {"rule": "median", "clip_norm": 60.0},
    "trimmed_mean": {"rule": "trimmed_mean", "beta": 0.2},
    "trimmed_mean_clipped": {"rule": "trimmed_mean", "beta": 0.3, "clip_norm": 40.0},
    "krum": {"rule": "krum", "f": 1},
    "krum_clipped": {"rule": "krum", "f": 2, "clip_norm": 50.0},
    "multi_krum": {"rule": "krum", "f": 1, "keep": 3, "clip_norm": 70.0},
    "dp_fedavg": {
        "rule": "dp_fedavg",
        "clip_norm": 50.0,
        "noise_multiplier": 1.1,
        "round_id": 7,
        "noise_seed": SEED,
    },
}

GOLDEN = {
    "pool": {
        "fedavg": "f3e8198725fbabfffd1e8ca424128f640c95f2be6fd1c0760e872512926a9183",
        "fedavg_capped_clipped": "603c55e3f0d373e2adfd7cbff0bc5b84a766fdf9b51c3b4c3d46e3183b62b66f",
        "median": "cb2f95ee34fca2b55a6d2ce760dd85e70f59912861194f33012e8e13453325a5",
        "median_clipped": "5874a38098a5b48bf6646177ca84155f83d9dd31d73f6d5cf25ccbd685bd5070",
        "trimmed_mean": "34756ddb9fca7ac80580bb2327e5513b5dda93e483268d2c1cfd7bcca930952e",
        "trimmed_mean_clipped": "d32f132eb28726acec04b3547f2359bda3887d24810576fcc3bfd66ed4220be0",
        "krum": "7b620790283f4877385b241dffd2d379455938da8393e3bada14934fec880625",
        "krum_clipped": "c64491a46c1ddea916600c5c7c16e502b758df0eca013b658665a131d10af4d1",
        "multi_krum": "676c8a9b741c76b8e6dd00b95bfe52e4a0936e6c52038d146645cde6032b5057",
        "dp_fedavg": "5fd1d64fa07c109616229c936b6dc5ba11fc4a5ac5c515ec09d17879234fc196",
    },
    "wide": {
        "fedavg": "6fa92a240a8e057059c9003393ad57d74d396ae8452700e20818bbb35d723fff",
        "fedavg_capped_clipped": "d4b790cc1d60cf3e8fba5866ba870ffef9c803c61b8fd44dfbe5775e8cb4b086",
        "median": "da837843939fee1fb5a9cbd9a74b7584c04c81422441c834ca7f1e48bbdc98e8",
        "median_clipped": "3cce0a93c1c7b5d56447e2f85bec683ede7faea4978862bfda5da96b2ca6c9a2",
        "trimmed_mean": "2966e843c52b772a31955f4c3331b1ba668eec52e99e452deeb3c374a3459ec2",
        "trimmed_mean_clipped": "61c43119598f3187e1b9ac6f2494e837c51aaddcb95ee4440110792a4d86c5d9",
        "krum": "685287ee30f21b4a28d2715761e2c1b1e96e5147b97459c6d1dd448682a15726",
        "krum_clipped": "05ed0752eb546769236174c6074de16949bb1221a1283e30e62b03cf79f4362a",
        "multi_krum": "771fb609b28c37c9cb9159e2bb97b5d16f08d16edfc8342a7c71d66c81ffa641",
        "dp_fedavg": "9c1bda40ab8f31e9a520c82fb69286f7ac0f73b993074be9966217cef995f405",
    },
}


def _pool(directory: Path) -> list[Update]:
    """Eight updates of a small model (one block and a part): an even count, a near-tie in
    Krum's scores, zeros of both signs."""
    layout = Layout.of(small_base())
    flats = random_flats(layout, 8, seed=11)
    flats[3] = flats[5].copy()
    flats[3][0] = np.nextafter(flats[3][0], np.float32(1))
    flats[6][:100] = -0.0
    flats[7][:100] = 0.0
    return write_updates(directory, layout, flats, [5, 80, 13, 13, 200, 7, 64, 1])


def _wide(directory: Path) -> list[Update]:
    """Nine updates of ~71 k entries (several chunks at BLOCK, one at the default, neither a
    multiple): an odd count, magnitudes over six decades, equal values across updates."""
    layout = Layout.of(
        {"a.weight": torch.zeros(3, 23_337), "b.bias": torch.zeros(1_001), "c": torch.zeros(7)}
    )
    rng = np.random.default_rng(2026)
    flats = [
        (rng.standard_normal(layout.numel) * 10.0 ** rng.integers(-4, 2, layout.numel)).astype(
            np.float32
        )
        for _ in range(9)
    ]
    flats[4][::7] = flats[2][::7]
    flats[8][:500] = -0.0
    flats[1][:300] = 0.0
    return write_updates(directory, layout, flats, [9, 1, 17, 400, 3, 25, 2, 88, 60])


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Update]]:
    root = tmp_path_factory.mktemp("golden")
    return {"pool": _pool(root / "pool"), "wide": _wide(root / "wide")}


@pytest.mark.parametrize(("chunk", "workers"), [(BLOCK, 3), (DEFAULT_CHUNK, 1), (BLOCK, 1)])
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_rule_gives_the_hash_it_always_gave(sets, name, chunk, workers) -> None:
    for key, updates in sets.items():
        got = aggregate(updates, chunk_elements=chunk, workers=workers, **CASES[name]).hash
        assert got == GOLDEN[key][name], f"{key}/{name}"
