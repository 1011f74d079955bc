"""Aggregation rules: bit-exact whatever the arrival order, chunk size or torch's threads,
and robust rules hold against poisoned updates where plain FedAvg does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.examples import examples
from tests.training.federated.federated_helpers import random_flats, small_base, write_updates
from training.federated.aggregate import (
    BLOCK,
    aggregate,
    coordinate_median,
    fedavg,
    krum,
    trimmed_mean,
)
from training.federated.kernels import weighted_mean_rows, weighted_rows
from training.federated.robust import _select, _sorted_columns, _sorting_network
from training.federated.streaming import Scratch, weighted_mean
from training.federated.updates import MAX_WEIGHT, Layout, Update, load_update

ROOT = Path(__file__).resolve().parents[3]
SEED = bytes(range(32))

# Every rule with settings that exercise it, clipping included; all run on the same updates.
CASES: dict[str, dict[str, Any]] = {
    "fedavg": {"rule": "fedavg"},
    "fedavg_capped_clipped": {"rule": "fedavg", "sample_cap": 40, "clip_norm": 60.0},
    "median": {"rule": "median"},
    "median_clipped": {"rule": "median", "clip_norm": 60.0},
    "trimmed_mean": {"rule": "trimmed_mean", "beta": 0.2},
    "krum": {"rule": "krum", "f": 1},
    "multi_krum": {"rule": "krum", "f": 1, "keep": 3, "clip_norm": 70.0},
    "dp_fedavg": {
        "rule": "dp_fedavg",
        "clip_norm": 50.0,
        "noise_multiplier": 1.1,
        "round_id": 7,
        "noise_seed": SEED,
    },
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> list[Update]:
    layout = Layout.of(small_base())
    flats = random_flats(layout, 8, seed=11)
    flats[3] = flats[5].copy()  # equal values, different files: Krum's scores tie ...
    flats[3][0] = np.nextafter(flats[3][0], np.float32(1))  # ... up to one ulp
    flats[6][:100] = -0.0  # zeros of both signs meet in the order statistics
    flats[7][:100] = 0.0
    samples = [5, 80, 13, 13, 200, 7, 64, 1]
    return write_updates(tmp_path_factory.mktemp("pool"), layout, flats, samples)


def _hashes(updates: list[Update], chunk: int) -> dict[str, str]:
    return {
        name: aggregate(updates, chunk_elements=chunk, **case).hash for name, case in CASES.items()
    }


@settings(
    max_examples=examples(15),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_it_gives_the_same_aggregate_in_any_arrival_order(pool, data) -> None:
    size = data.draw(st.integers(min_value=5, max_value=len(pool)), label="size")
    subset = pool[:size]
    shuffled = data.draw(st.permutations(subset), label="order")
    name = data.draw(st.sampled_from(sorted(CASES)), label="rule")
    first = aggregate(subset, chunk_elements=BLOCK, **CASES[name])
    again = aggregate(shuffled, chunk_elements=BLOCK, **CASES[name])
    assert again.hash == first.hash
    assert again.included == tuple(sorted(u.hash for u in subset))
    assert np.array_equal(again.flat.view(np.uint32), first.flat.view(np.uint32))


def test_it_gives_the_same_hash_for_any_chunk_size(pool) -> None:
    assert _hashes(pool, BLOCK) == _hashes(pool, 3 * BLOCK)


def test_it_refuses_a_file_cut_short_after_it_was_checked(tmp_path) -> None:
    layout = Layout.of(small_base())
    updates = write_updates(tmp_path, layout, random_flats(layout, 3, seed=1))
    with open(updates[1].path, "r+b") as f:
        f.truncate(layout.data_offset + 4 * 100)
    for workers in (1, 2):
        with pytest.raises(OSError, match="changed after it was checked"):
            fedavg(updates, chunk_elements=BLOCK, workers=workers)


def test_it_turns_negative_zeros_into_positive_ones_in_order_statistics(pool) -> None:
    for result in (coordinate_median(pool), trimmed_mean(pool, beta=0.2)):
        zeros = result.flat[result.flat == 0]
        assert not np.signbit(zeros).any()


_CHILD = """
import json, sys
import torch
torch.set_num_threads(int(sys.argv[1]))
from safetensors.torch import load_file
from training.federated.aggregate import aggregate
from training.federated.updates import Layout, load_update
spec = json.loads(open(sys.argv[3]).read())
layout = Layout.of(load_file(spec["base"]))
updates = [load_update(p, layout, samples=n) for p, n in spec["updates"]]
cases = spec["cases"]
cases["dp_fedavg"]["noise_seed"] = bytes.fromhex(cases["dp_fedavg"]["noise_seed"])
chunk, workers = int(sys.argv[2]), int(sys.argv[4])
print(json.dumps({name: aggregate(updates, chunk_elements=chunk, workers=workers, **case).hash
                  for name, case in cases.items()}))
"""


def test_it_gives_the_same_hash_at_one_and_two_threads_in_separate_processes(tmp_path) -> None:
    """A model of convolutions and BatchNorm (~150 k entries, not a multiple of any chunk);
    two fresh processes at the same time, torch at 1 thread and at 2, two chunk sizes, one
    aggregation worker and three."""
    from safetensors.torch import save_file
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        *[nn.Sequential(nn.Conv2d(32, 32, 3), nn.BatchNorm2d(32)) for _ in range(16)],
        nn.Linear(32, 3),
    )
    base = net.state_dict()
    save_file(dict(base), tmp_path / "base.safetensors")
    layout = Layout.of(base)
    flats = random_flats(layout, 5, seed=3, scale=1e-3)
    updates = write_updates(tmp_path / "u", layout, flats, [10, 20, 30, 40, 50])
    cases = json.loads(
        json.dumps({**CASES, "dp_fedavg": {**CASES["dp_fedavg"], "noise_seed": SEED.hex()}})
    )
    for case in cases.values():  # these deltas' norms are ~0.4
        if "clip_norm" in case:
            case["clip_norm"] = 0.3
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "base": str(tmp_path / "base.safetensors"),
                "updates": [[str(u.path), u.samples] for u in updates],
                "cases": cases,
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(threads), str(chunk), str(spec), str(workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for threads, chunk, workers in ((1, 16 * BLOCK, 1), (2, 5 * BLOCK, 3))
    ]
    runs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        runs.append(json.loads(out.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    assert len(set(runs[0].values())) == len(cases)  # the rules really differ


def _poisoned(tmp_path: Path, attack: str) -> tuple[list[Update], np.ndarray]:
    layout = Layout.of(small_base())
    rng = np.random.default_rng(5)
    mean = rng.standard_normal(layout.numel)
    honest = [
        (mean + 0.05 * rng.standard_normal(layout.numel)).astype(np.float32) for _ in range(8)
    ]
    if attack == "scaled":
        bad = [100 * honest[0], 100 * honest[1]]
    elif attack == "sign_flipped":
        bad = [-honest[0], -honest[1]]
    else:
        bad = [(100 * rng.standard_normal(layout.numel)).astype(np.float32) for _ in range(2)]
    target = np.mean(np.stack(honest).astype(np.float64), axis=0)
    return write_updates(tmp_path, layout, honest + bad, [100] * 10), target


@pytest.mark.parametrize("attack", ["scaled", "sign_flipped", "gaussian"])
def test_robust_rules_stay_near_the_honest_mean_where_fedavg_does_not(tmp_path, attack) -> None:
    updates, target = _poisoned(tmp_path, attack)

    def error(result) -> float:
        return float(np.linalg.norm(result.flat - target) / np.linalg.norm(target))

    assert error(fedavg(updates)) > 0.35
    for robust in (
        coordinate_median(updates),
        trimmed_mean(updates, beta=0.2),
        krum(updates, f=2),
        krum(updates, f=2, keep=5),
    ):
        assert error(robust) < 0.1, robust.rule
    assert set(krum(updates, f=2, keep=5).selected) <= {u.hash for u in updates[:8]}


def test_fedavg_caps_claimed_sample_counts(tmp_path) -> None:
    layout = Layout.of(small_base())
    flats = [np.full(layout.numel, v, dtype=np.float32) for v in (1.0, 3.0)]
    updates = write_updates(tmp_path, layout, flats, [10, 1_000_000])
    assert fedavg(updates).flat[0] == pytest.approx((10 + 3e6) / 1_000_010)
    assert fedavg(updates, sample_cap=10).flat[0] == 2.0


def test_clipping_bounds_each_updates_influence(tmp_path) -> None:
    layout = Layout.of(small_base())
    big = np.zeros(layout.numel, dtype=np.float32)
    big[0] = 1000.0
    updates = write_updates(tmp_path, layout, [big, np.zeros_like(big)])
    assert fedavg(updates, clip_norm=2.0).flat[0] == 1.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda u: aggregate(u, rule="fedsgd"), "unknown rule"),
        (lambda u: aggregate([], rule="fedavg"), "no updates"),
        (lambda u: aggregate(u + u[:1], rule="fedavg"), "twice"),
        (lambda u: krum(u, f=3), "more than 8"),
        (lambda u: krum(u, f=1, keep=9), "keep"),
        (lambda u: trimmed_mean(u, beta=0.5), "beta"),
        (lambda u: fedavg(u, clip_norm=0.0), "clip_norm"),
        (lambda u: fedavg(u, chunk_elements=1000), "multiple"),
        (lambda u: coordinate_median(u, workers=0), "workers"),
    ],
)
def test_it_refuses_impossible_settings(pool, call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call(pool)


@settings(max_examples=examples(40), deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([-2.0, -0.0, 0.0, 0.5, 3.0, 1e30]), min_size=3, max_size=3),
        min_size=1,
        max_size=37,
    )
)
def test_the_sorting_network_sorts_every_column(columns) -> None:
    rows = np.array(columns, dtype=np.float32)
    got = _sorted_columns(rows, None)
    assert np.array_equal(got, np.sort(rows.astype(np.float64), axis=0))


def _whole_network(rows: np.ndarray) -> np.ndarray:
    """Every comparator of the sorting network, min and max both (the rules' first way)."""
    rows = rows.copy()
    for a, b in _sorting_network(len(rows)):
        low = np.minimum(rows[a], rows[b])
        rows[b] = np.maximum(rows[a], rows[b])
        rows[a] = low
    return rows


@settings(max_examples=examples(60), deadline=None)
@given(data=st.data())
def test_the_pruned_network_leaves_the_same_bits_at_the_ranks_it_keeps(data) -> None:
    n = data.draw(st.integers(min_value=1, max_value=21), label="n")
    values = st.sampled_from([-2.0, -0.0, 0.0, 0.5, 3.0, 1e30, -1e-30])
    columns = data.draw(st.lists(st.lists(values, min_size=n, max_size=n), min_size=1))
    ranks = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1), label="ranks"))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    rows = np.array(columns, dtype=dtype).T.copy()
    expected = _whole_network(rows)[ranks]
    got = _select(rows.copy(), ranks, np.empty(rows.shape[1], dtype=dtype))
    bits = np.uint32 if dtype is np.float32 else np.uint64
    assert np.array_equal(np.array(got).view(bits), expected.view(bits))


def test_an_aggregate_is_written_in_the_update_format_under_its_hash(pool, tmp_path) -> None:
    result = trimmed_mean(pool, beta=0.2)
    path = tmp_path / "aggregate.safetensors"
    assert result.write(path) == result.hash
    again = load_update(path, result.layout)
    assert again.hash == result.hash
    assert list(result.delta) == result.layout.keys


def test_krum_breaks_a_tie_in_scores_by_the_lowest_update_hash(tmp_path) -> None:
    layout = Layout.of(small_base())
    unit = np.zeros(layout.numel, dtype=np.float32)
    unit[0] = 1.0
    updates = write_updates(tmp_path, layout, [unit, -unit, np.zeros_like(unit)])
    lowest = min(u.hash for u in updates)
    for order in (updates, updates[::-1], updates[1:] + updates[:1]):
        assert krum(order, f=0).selected == (lowest,)  # every score is exactly 1.0


def _weighted_mean_reference(
    rows: np.ndarray, weights: np.ndarray, scales: np.ndarray | None, total: float
) -> np.ndarray:
    """The weighted mean as aggregation first computed it (the golden hashes' code): every
    row widened at once, times its weight, times its scale, summed in row order from +0.0."""
    terms = rows.astype(np.float64)
    terms *= weights[:, None]
    if scales is not None:
        terms *= scales[:, None]
    acc = terms[0] + 0.0
    for term in terms[1:]:
        acc += term
    return acc / total


@settings(max_examples=examples(200), deadline=None)
@given(data=st.data())
def test_the_weighted_mean_gives_the_bits_of_the_first_formulation(data) -> None:
    count = data.draw(st.integers(min_value=1, max_value=40), label="count")
    value = st.one_of(
        st.floats(width=32, allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -0.0, 1e-45, -3.4e38, 3.4e38]),
    )
    rows = np.array(
        data.draw(
            st.lists(st.lists(value, min_size=count, max_size=count), min_size=1, max_size=10)
        ),
        dtype=np.float32,
    )
    n = len(rows)
    weights = np.array(
        data.draw(st.lists(st.integers(1, MAX_WEIGHT), min_size=n, max_size=n)), dtype=np.float64
    )
    scales = data.draw(
        st.none() | st.lists(st.floats(1e-6, 1.0), min_size=n, max_size=n).map(np.array),
        label="scales",
    )
    total = float(weights.sum())
    expected = _weighted_mean_reference(rows, weights, scales, total)
    got = weighted_mean(list(rows), weights, scales, total, Scratch(count))
    assert np.array_equal(got.view(np.uint64), expected.view(np.uint64))
    # As FedAvg reads them: one (rows, chunk) block, summed in one compiled pass (without
    # clipping; kernels.py), in a block wider than the span, and in one exactly as wide.
    block = np.zeros((n, count + 3), dtype=np.float32)
    block[:, :count] = rows
    got = weighted_mean(block[:, :count], weights, scales, total, Scratch(count + 3))
    assert np.array_equal(got.view(np.uint64), expected.view(np.uint64))
    whole = np.ascontiguousarray(block[:, :count])
    got = weighted_mean(whole, weights, scales, total, Scratch(count))
    assert np.array_equal(got.view(np.uint64), expected.view(np.uint64))
    if scales is None:  # FedAvg's chunk whole: the sum, divided and rounded in one pass
        for view in (whole, block[:, :count]):
            out = np.empty(count, dtype=np.float32)
            weighted_mean_rows(weights, view, total, np.empty(count), out)
            assert np.array_equal(out.view(np.uint32), expected.astype(np.float32).view(np.uint32))


def test_the_compiled_weighted_sum_refuses_what_it_was_not_built_for() -> None:
    block, weights, out = np.ones((2, 3), np.float32), np.ones(2), np.empty(3)
    assert weighted_rows(weights, block, out).tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(TypeError, match="float32 block"):
        weighted_rows(weights, block.astype(np.float64), out)
    with pytest.raises(ValueError, match="shapes"):
        weighted_rows(np.ones(3), block, out)
    with pytest.raises(ValueError, match="not float32"):
        weighted_mean_rows(weights, block, 2.0, out, np.empty(3))
