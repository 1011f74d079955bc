"""Aggregation rules, bit-exact and independent of the order updates arrive in.

Every rule takes checked updates (``load_update``) and returns an ``Aggregate``: a float32
delta in the update format, whose SHA-256 is the aggregate hash any participant recomputes.
``aggregate`` runs the rule a training config names. FedAvg and DP-FedAvg live here, the
robust rules in ``robust``, and what pins their bits down (hash order, chunked reads on
worker threads, float64 sums in a fixed order, block-wise norms) in ``streaming``. DP noise
comes from the seeded generator of ``privacy.noise_generator``, drawn in flat-vector order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from training.federated.privacy import noise_generator, noise_std
from training.federated.robust import coordinate_median, krum, krum_scores, trimmed_mean
from training.federated.streaming import (
    BLOCK,
    DEFAULT_CHUNK,
    Aggregate,
    Scan,
    Scratch,
    Span,
    capped_weights,
    clip_scales,
    default_workers,
    finish,
    in_hash_order,
    weighted_sum,
)
from training.federated.updates import Update

__all__ = [
    "BLOCK",
    "DEFAULT_CHUNK",
    "RULES",
    "Aggregate",
    "aggregate",
    "coordinate_median",
    "default_workers",
    "dp_fedavg",
    "fedavg",
    "krum",
    "krum_scores",
    "trimmed_mean",
]


def fedavg(
    updates: Sequence[Update],
    *,
    sample_cap: int | None = None,
    clip_norm: float | None = None,
    chunk_elements: int = DEFAULT_CHUNK,
    workers: int | None = None,
) -> Aggregate:
    """Mean weighted by sample count, each claim capped at ``sample_cap``; with
    ``clip_norm``, each update is first scaled to norm at most C."""
    ordered = in_hash_order(updates)
    weights = capped_weights(ordered, sample_cap)
    scan = Scan(ordered, chunk_elements, workers, block=True)
    scales = clip_scales(scan, clip_norm)
    column = np.array(weights, dtype=np.float64)

    total = float(sum(weights))
    from training.federated.kernels import weighted_mean_rows  # numba: imported when used

    def reduce_chunk(span: Span, values: list[np.ndarray], scratch: Scratch) -> np.ndarray:
        return weighted_sum(values, column, scales, span.count, scratch)

    def mean_into(span: Span, block: np.ndarray, scratch: Scratch, out: np.ndarray) -> None:
        acc = scratch.get("sum", 1)[0, : span.count]
        weighted_mean_rows(column, block, total, acc, out)  # one compiled pass (kernels.py)

    fused = mean_into if scales is None else None
    return finish("fedavg", ordered, scan, reduce_chunk, total=total, fused=fused)


def dp_fedavg(
    updates: Sequence[Update],
    *,
    clip_norm: float,
    noise_multiplier: float,
    round_id: int,
    noise_seed: bytes,
    chunk_elements: int = DEFAULT_CHUNK,
    workers: int | None = None,
) -> Aggregate:
    """DP-FedAvg with fixed clipping (McMahan et al. 2018): each update clipped to norm C, the
    unweighted mean of the m updates, plus Gaussian noise of sigma = z * C / m from the round's
    seeded generator. Unweighted, because a sample-count weight would change each update's
    influence and so the sensitivity the noise is sized for."""
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be non-negative, not {noise_multiplier}")
    ordered = in_hash_order(updates)
    scan = Scan(ordered, chunk_elements, workers, block=True)
    scales = clip_scales(scan, clip_norm)
    sigma = noise_std(noise_multiplier=noise_multiplier, clip_norm=clip_norm, updates=len(ordered))
    rng = noise_generator(round_id, noise_seed)
    ones = np.ones(len(ordered))
    noise = np.empty(scan.chunk)

    def reduce_chunk(span: Span, values: list[np.ndarray], scratch: Scratch) -> np.ndarray:
        return weighted_sum(values, ones, scales, span.count, scratch)

    def add_noise(span: Span, mean: np.ndarray) -> np.ndarray:
        draws = noise[: span.count]
        rng.standard_normal(dtype=np.float64, out=draws)  # in flat-vector order
        draws *= sigma
        mean += draws
        return mean

    return finish(
        "dp_fedavg", ordered, scan, reduce_chunk, in_order=add_noise, total=float(len(ordered))
    )


RULES: dict[str, Callable[..., Aggregate]] = {
    "fedavg": fedavg,
    "median": coordinate_median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "dp_fedavg": dp_fedavg,
}


def aggregate(updates: Sequence[Update], *, rule: str, **settings: Any) -> Aggregate:
    """Run the rule a training config names, with its settings."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: one of {', '.join(sorted(RULES))}")
    return RULES[rule](updates, **settings)
