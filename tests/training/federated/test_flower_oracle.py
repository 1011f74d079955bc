"""Our rules against Flower's own aggregation functions (flwr 1.42) on random updates.

Flower reduces in arrival order in float32/float64 as numpy pleases and its DP noise is
unseeded, so it is an oracle within float tolerance, never for hashes (FACTS.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.server.strategy.aggregate import (
    aggregate as flwr_fedavg,
)
from flwr.server.strategy.aggregate import (
    aggregate_krum,
    aggregate_median,
    aggregate_trimmed_avg,
)
from flwr.supercore.differential_privacy import clip_inputs_inplace, compute_stdv
from safetensors.numpy import load_file

from tests.training.federated.federated_helpers import random_flats, small_base, write_updates
from training.federated.aggregate import (
    coordinate_median,
    dp_fedavg,
    fedavg,
    krum,
    trimmed_mean,
)
from training.federated.updates import Layout, Update

SAMPLES = [12, 40, 7, 300, 25, 60, 90, 5, 33]


@pytest.fixture(scope="module")
def updates(tmp_path_factory: pytest.TempPathFactory) -> list[Update]:
    layout = Layout.of(small_base())
    flats = random_flats(layout, len(SAMPLES), seed=21)
    return write_updates(tmp_path_factory.mktemp("oracle"), layout, flats, SAMPLES)


def _flower_results(updates: list[Update], counts=None) -> list[tuple[list[np.ndarray], int]]:
    """Flower's input: per client, its arrays in layout order, and its example count."""
    counts = [u.samples for u in updates] if counts is None else counts
    out = []
    for update, n in zip(updates, counts, strict=True):
        arrays = load_file(update.path)
        out.append(([arrays[k] for k in update.layout.keys], n))
    return out


def _close(ours: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def _dp(updates: list[Update], clip: float, z: float) -> np.ndarray:
    seed = bytes(32)
    return dp_fedavg(updates, clip_norm=clip, noise_multiplier=z, round_id=1, noise_seed=seed).flat


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def test_fedavg_matches_flowers_weighted_average(updates) -> None:
    ours = fedavg(updates)
    np.testing.assert_allclose(
        ours.flat, _flat(flwr_fedavg(_flower_results(updates))), rtol=1e-5, atol=1e-6
    )
    capped = fedavg(updates, sample_cap=50)
    expected = flwr_fedavg(_flower_results(updates, [min(n, 50) for n in SAMPLES]))
    _close(capped.flat, _flat(expected))


def test_median_matches_flowers(updates) -> None:
    np.testing.assert_allclose(
        coordinate_median(updates).flat,
        _flat(aggregate_median(_flower_results(updates))),
        rtol=1e-6,
    )
    even = updates[:8]
    np.testing.assert_allclose(
        coordinate_median(even).flat,
        _flat(aggregate_median(_flower_results(even))),
        rtol=1e-6,
        atol=1e-7,
    )


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.2, 0.34])
def test_trimmed_mean_matches_flowers(updates, beta) -> None:
    expected = aggregate_trimmed_avg(_flower_results(updates), beta)
    np.testing.assert_allclose(
        trimmed_mean(updates, beta=beta).flat, _flat(expected), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("f", [0, 1, 2, 3])
def test_krum_picks_what_flower_picks(updates, f) -> None:
    ours = krum(updates, f=f)
    expected = aggregate_krum(_flower_results(updates), num_malicious=f, to_keep=0)
    assert np.array_equal(ours.flat, _flat(expected).astype(np.float32))


@pytest.mark.parametrize("keep", [2, 4])
def test_multi_krum_matches_flower(updates, keep) -> None:
    ours = krum(updates, f=2, keep=keep)
    expected = aggregate_krum(_flower_results(updates), num_malicious=2, to_keep=keep)
    np.testing.assert_allclose(ours.flat, _flat(expected), rtol=1e-5, atol=1e-6)


def _flower_dp_mean(updates: list[Update], clip: float) -> np.ndarray:
    results = _flower_results(updates, [1] * len(updates))
    for arrays, _ in results:
        clip_inputs_inplace(arrays, clip)
    return _flat(flwr_fedavg(results))


def test_dp_fedavg_clips_and_averages_as_flower_does(updates) -> None:
    clip = 30.0  # below every update's norm (~73), so all are clipped
    ours = dp_fedavg(
        updates, clip_norm=clip, noise_multiplier=0.0, round_id=1, noise_seed=bytes(32)
    )
    np.testing.assert_allclose(ours.flat, _flower_dp_mean(updates, clip), rtol=1e-5, atol=1e-6)


def test_dp_fedavg_noise_has_flowers_standard_deviation(updates) -> None:
    clip, z = 30.0, 2.0
    quiet = dp_fedavg(
        updates, clip_norm=clip, noise_multiplier=0.0, round_id=1, noise_seed=bytes(32)
    )
    noisy = dp_fedavg(updates, clip_norm=clip, noise_multiplier=z, round_id=1, noise_seed=bytes(32))
    noise = noisy.flat.astype(np.float64) - quiet.flat
    sigma = compute_stdv(z, clip, len(updates))
    assert abs(noise.mean()) < 4 * sigma / np.sqrt(noise.size)
    assert noise.std() == pytest.approx(sigma, rel=0.05)
