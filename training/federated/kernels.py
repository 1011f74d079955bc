"""FedAvg's weighted sum as one compiled loop (numba), the hot path of aggregation.

numpy takes the sum ``sum_k w_k x_k`` (float32 values widened to float64, integer weights)
in one ``einsum`` pass at 0.4-0.5 ns of CPU per value and update on this project's
machines; the loop below, compiled by numba, does the same arithmetic at about 0.2 ns
(docs/federated.md, "Cost"), which is what brings FedAvg near the cost of reading its
inputs once.

The bits are those of the numpy forms, by construction: per element ``j`` the sum starts
at +0.0 and adds ``w_k x float64(x_kj)`` for ``k`` in row order (the updates' hash order),
each addition rounding once. The product is exact (a 24-bit significand times an integer
below 2**29 fits float64's 53 bits), so whether LLVM fuses the multiply into the add (an
FMA) changes nothing; numba compiles without fast-math, so no addition is reassociated;
vectorising runs several elements ``j`` side by side, each in its own order. A Hypothesis
test holds it to the widened-at-once formulation bit for bit (test_aggregate.py), and the
golden hashes pin it (test_golden_hashes.py).

Compiled on first use (about half a second) and cached on disk beside this module
(numba's ``cache=True``), so later processes load it.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _weighted_rows(weights: np.ndarray, block: np.ndarray, out: np.ndarray) -> None:
    rows, count = block.shape
    for j in range(count):
        out[j] = 0.0
    for k in range(rows):
        weight = weights[k]
        for j in range(count):
            out[j] += weight * np.float64(block[k, j])


@numba.njit(nogil=True, cache=True)
def _weighted_mean_rows(
    weights: np.ndarray, block: np.ndarray, total: float, acc: np.ndarray, out: np.ndarray
) -> None:
    _weighted_rows(weights, block, acc)  # a jitted call from jitted code: inlined by LLVM
    for j in range(block.shape[1]):
        out[j] = np.float32(acc[j] / total)  # divided in float64, rounded to nearest once


def weighted_rows(weights: np.ndarray, block: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[j] = sum over k in order of weights[k] x block[k, j]`` in float64, from +0.0;
    ``weights`` float64 integers below 2**29, ``block`` float32 (rows, count). Releases the
    GIL, so the aggregation's worker threads run it side by side."""
    _check(weights, block, out)
    _weighted_rows(weights, block, out)
    return out


def _check(weights: np.ndarray, block: np.ndarray, out: np.ndarray) -> None:
    if block.dtype != np.float32 or weights.dtype != np.float64 or out.dtype != np.float64:
        raise TypeError("the weighted sum takes float64 weights, a float32 block, a float64 out")
    if block.ndim != 2 or len(weights) != block.shape[0] or out.shape != (block.shape[1],):
        raise ValueError(f"weighted sum: shapes {weights.shape}, {block.shape}, {out.shape}")


def weighted_mean_rows(
    weights: np.ndarray, block: np.ndarray, total: float, acc: np.ndarray, out: np.ndarray
) -> None:
    """FedAvg's chunk whole: ``weighted_rows`` into ``acc`` (float64 scratch), then each
    sum divided by ``total`` in float64 and rounded to float32 into ``out``: the bits of
    ``numpy.divide(acc, total, out=float32, dtype=float64)``, without a second pass."""
    _check(weights, block, acc)
    if out.dtype != np.float32 or out.shape != acc.shape:
        raise ValueError(f"weighted_mean_rows: out is {out.dtype} {out.shape}, not float32")
    _weighted_mean_rows(weights, block, float(total), acc, out)


def warm() -> None:
    """Compile (or load from the cache) the loop for both layouts aggregation hands it: a
    whole buffer, and the narrower view of a chunk's last span."""
    block = np.zeros((2, 8), dtype=np.float32)
    for view in (block, block[:, :4]):
        count = view.shape[1]
        weighted_rows(np.ones(2), view, np.empty(count))
        weighted_mean_rows(np.ones(2), view, 2.0, np.empty(count), np.empty(count, np.float32))
