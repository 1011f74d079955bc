"""The robust rules: coordinate median, trimmed mean, Krum and Multi-Krum.

Order statistics (median, trimmed mean) sort each coordinate's values with a fixed sorting
network of elementwise min/max, pruned to the comparators the ranks a rule uses depend on
(the same operations on the same values as the whole network, so the same bits); without
clipping it runs on the float32 values, as widening is exact and monotone. Equal values
are identical bits except -0.0 and +0.0 (which min/max may swap or duplicate), so the
result is normalised to +0.0 where it is zero, and the trimmed sum runs over the sorted
values in order. Krum's distances are reduced as ``streaming`` reduces every norm; ties in
its scores break by update hash.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from training.federated.streaming import (
    BLOCK,
    DEFAULT_CHUNK,
    Aggregate,
    Scan,
    Scratch,
    Span,
    block_sums,
    capped_weights,
    clip_scales,
    finish,
    in_hash_order,
    weighted_mean,
    widen,
)
from training.federated.updates import Update


@functools.lru_cache(maxsize=64)
def _sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort comparators for n rows (padded to a power of two with
    +inf rows, whose comparators are no-ops and dropped)."""
    size = 1 << max(n - 1, 0).bit_length()
    pairs = []
    merged = 1
    while merged < size:
        k = merged
        while k >= 1:
            for j in range(k % merged, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * merged) == (i + j + k) // (2 * merged):
                        pairs.append((i + j, i + j + k))
            k //= 2
        merged *= 2
    return tuple((a, b) for a, b in pairs if b < n)


@functools.lru_cache(maxsize=256)
def _selection_network(n: int, ranks: tuple[int, ...]) -> tuple[tuple[int, int, bool, bool], ...]:
    """The comparators of ``_sorting_network(n)`` that the values at ``ranks`` depend on,
    each with whether its minimum and its maximum are used: walking back from the outputs,
    a comparator is kept when a later one (or the output) reads one of its wires."""
    needed = set(ranks)
    kept = []
    for a, b in reversed(_sorting_network(n)):
        low, high = a in needed, b in needed
        if low or high:
            kept.append((a, b, low, high))
            needed.update((a, b))
    return tuple(reversed(kept))


def _select(
    wide: np.ndarray | Sequence[np.ndarray], ranks: Sequence[int], spare: np.ndarray
) -> list[np.ndarray]:
    """Rows of each column's values at ``ranks`` in ascending order, computed in place in
    ``wide`` (rows reordered through references; ``spare`` is one more row), bit for bit
    the rows the whole sorting network leaves there."""
    rows = list(wide)
    for a, b, low, high in _selection_network(len(rows), tuple(ranks)):
        if low and high:
            np.minimum(rows[a], rows[b], out=spare)
            np.maximum(rows[a], rows[b], out=rows[b])
            rows[a], spare = spare, rows[a]
        elif low:
            np.minimum(rows[a], rows[b], out=rows[a])
        else:
            np.maximum(rows[a], rows[b], out=rows[b])
    return [rows[r] for r in ranks]


def _sorted_columns(rows: np.ndarray, scales: np.ndarray | None) -> np.ndarray:
    """Each column of a (rows, count) float32 array widened, scaled and sorted."""
    wide = rows.astype(np.float64)
    if scales is not None:
        wide *= scales[:, None]
    return np.array(_select(wide, range(len(wide)), np.empty(wide.shape[1])))


def _order_statistics(
    values: list[np.ndarray],
    scales: np.ndarray | None,
    ranks: Sequence[int],
    span: Span,
    scratch: Scratch,
) -> tuple[list[np.ndarray], np.ndarray]:
    """The rows at ``ranks`` of the span's values (scaled, if clipping) sorted per column,
    and a free float64 scratch row for the result.

    Unclipped, the network runs on the float32 values themselves, in the read buffer of a
    ``copy`` scan: widening is exact and monotone, so min/max pick the same values, zero
    signs included, and the caller widens only the ranks it uses."""
    if scales is None:
        spare = scratch.get("spare32", 1, "<f4")[0, : span.count]
        selected = _select(values, ranks, spare)
    else:
        wide = widen(values, scales, span, scratch)[:, : span.count]
        selected = _select(wide, ranks, scratch.get("spare", 1)[0, : span.count])
    return selected, scratch.get("out", 1)[0, : span.count]


def _positive_zero(values: np.ndarray) -> np.ndarray:
    values += 0.0  # -0.0 + 0.0 is +0.0: which zero a sort put first no longer shows
    return values


def coordinate_median(
    updates: Sequence[Update],
    *,
    clip_norm: float | None = None,
    chunk_elements: int = DEFAULT_CHUNK,
    workers: int | None = None,
) -> Aggregate:
    """Per coordinate, the median of the updates (the mean of the two middle values when
    their number is even)."""
    ordered = in_hash_order(updates)
    scan = Scan(ordered, chunk_elements, workers, copy=True)
    scales = clip_scales(scan, clip_norm)
    n = len(ordered)
    ranks = (n // 2,) if n % 2 else (n // 2 - 1, n // 2)

    def reduce_chunk(span: Span, values: list[np.ndarray], scratch: Scratch) -> np.ndarray:
        middle, out = _order_statistics(values, scales, ranks, span, scratch)
        np.copyto(out, middle[0])  # widened, if it was float32
        if not n % 2:
            out += middle[1]
            out /= 2.0
        return _positive_zero(out)

    return finish("median", ordered, scan, reduce_chunk)


def trimmed_mean(
    updates: Sequence[Update],
    *,
    beta: float,
    clip_norm: float | None = None,
    chunk_elements: int = DEFAULT_CHUNK,
    workers: int | None = None,
) -> Aggregate:
    """Per coordinate, drop the ``int(beta * n)`` smallest and largest values and average the
    rest (unweighted, as Flower's FedTrimmedAvg)."""
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"beta must be in [0, 0.5), not {beta}")
    ordered = in_hash_order(updates)
    scan = Scan(ordered, chunk_elements, workers, copy=True)
    scales = clip_scales(scan, clip_norm)
    n = len(ordered)
    cut = int(beta * n)
    ranks = tuple(range(cut, n - cut))

    def reduce_chunk(span: Span, values: list[np.ndarray], scratch: Scratch) -> np.ndarray:
        kept, acc = _order_statistics(values, scales, ranks, span, scratch)
        np.copyto(acc, kept[0])  # widened, if it was float32
        acc += 0.0  # the sum starts at +0.0: 0.0 + v is v + 0.0
        for row in kept[1:]:  # in sorted order, so the sum's rounding is fixed
            acc += row
        acc /= float(n - 2 * cut)
        return _positive_zero(acc)

    return finish("trimmed_mean", ordered, scan, reduce_chunk)


def krum_scores(
    updates: Sequence[Update],
    *,
    f: int,
    clip_norm: float | None = None,
    chunk_elements: int = DEFAULT_CHUNK,
    workers: int | None = None,
) -> list[float]:
    """Krum's score per update in hash order: the sum of its squared distances to its
    ``n - f - 2`` nearest others."""
    ordered = in_hash_order(updates)
    scan = Scan(ordered, chunk_elements, workers)
    scales = clip_scales(scan, clip_norm)
    return _krum_scores(scan, f, scales)


def _krum_scores(scan: Scan, f: int, scales: np.ndarray | None) -> list[float]:
    n = len(scan.updates)
    if f < 0 or n <= 2 * f + 2:
        raise ValueError(f"Krum with f={f} needs more than {2 * f + 2} updates, not {n}")
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    parts: list[np.ndarray] = []

    def work(span: Span, values: list[np.ndarray], scratch: Scratch) -> np.ndarray:
        wide = widen(values, scales, span, scratch)
        diff = scratch.get("diff", n - 1)[:, : span.padded]
        sums = np.empty((len(pairs), span.padded // BLOCK))
        k = 0
        for i in range(n - 1):  # pairs (i, j > i) in order, as ``pairs``
            d = diff[: n - 1 - i]
            np.subtract(wide[i], wide[i + 1 :], out=d)
            np.multiply(d, d, out=d)
            sums[k : k + n - 1 - i] = block_sums(d)
            k += n - 1 - i
        return sums

    scan.run(work, lambda span, sums: parts.append(sums))
    per_pair = np.concatenate(parts, axis=1)
    dist = np.zeros((n, n))
    for (i, j), row in zip(pairs, per_pair, strict=True):
        dist[i, j] = dist[j, i] = math.fsum(row)
    nearest = n - f - 2
    return [math.fsum(sorted(dist[i, k] for k in range(n) if k != i)[:nearest]) for i in range(n)]


def krum(
    updates: Sequence[Update],
    *,
    f: int,
    keep: int = 1,
    sample_cap: int | None = None,
    clip_norm: float | None = None,
    chunk_elements: int = DEFAULT_CHUNK,
    workers: int | None = None,
) -> Aggregate:
    """Krum (``keep=1``: the update with the lowest score) or Multi-Krum (the ``keep`` lowest,
    averaged by capped sample count, as Flower does); equal scores rank by update hash."""
    ordered = in_hash_order(updates)
    if not 1 <= keep <= len(ordered):
        raise ValueError(f"keep must be between 1 and {len(ordered)}, not {keep}")
    scan = Scan(ordered, chunk_elements, workers)
    scales = clip_scales(scan, clip_norm)
    scores = _krum_scores(scan, f, scales)
    ranked = sorted(range(len(ordered)), key=lambda i: (scores[i], ordered[i].hash))
    picked = sorted(ranked[:keep])
    chosen = [ordered[i] for i in picked]
    chosen_scales = None if scales is None else scales[picked]
    weights = capped_weights(chosen, sample_cap)
    column = np.array(weights, dtype=np.float64)
    total = float(sum(weights))
    rule = "krum" if keep == 1 else "multi_krum"

    def reduce_chunk(span: Span, values: list[np.ndarray], scratch: Scratch) -> np.ndarray:
        return weighted_mean(values, column, chosen_scales, total, scratch)

    return finish(rule, ordered, scan, reduce_chunk, rows=picked, selected=chosen)
