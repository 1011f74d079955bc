"""The box-matching rule in integers: the leaderboard contract and ``training`` agree bit for bit.

Boxes are DESIGN.md's: integer pixel coordinates, half-open, ``(x0, y0, x1, y1)``
with area ``(x1 - x0) * (y1 - y0)``. Within one case (image):

- a prediction and a true box may match when their IoU is at least 0.5, decided
  as ``2 * intersection >= union``: no division, no float;
- predictions are taken in descending score; equal scores keep their order in
  the submission (a stable sort);
- each prediction takes, among the true boxes still unmatched and at IoU >= 0.5,
  the one with the highest IoU, comparing ``i1 / u1`` with ``i2 / u2`` as
  ``i1 * u2`` against ``i2 * u1``; equal IoUs go to the lowest index. A
  prediction left without one is a false positive.

This is pycocotools' ``evaluateImg`` at an IoU threshold of 0.5 except for that
last tie: pycocotools keeps the *later* true box of equal IoU (it replaces its
candidate unless the new IoU is strictly lower). Integer boxes make both rules
decide the threshold alike (``i / (2 i)`` is exactly 0.5 in floating point too).

Scores over a set of cases are counted, not averaged: true positives,
predictions and true boxes are summed over every case, then

- precision = floor(10000 * tp / predictions), recall = floor(10000 * tp / truths),
  F1 = floor(20000 * tp / (predictions + truths)) (the harmonic mean of the
  exact precision and recall, not of the rounded ones), all in basis points;
- no predictions and no true boxes at all: 10000 for all three (nothing missed,
  nothing claimed wrongly); exactly one of them empty: 0 for all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Box = tuple[int, int, int, int]  # x0, y0, x1, y1, half-open
BASIS_POINTS = 10_000


@dataclass(frozen=True)
class Prediction:
    box: Box
    score: int | float  # integers on chain; any totally ordered number works here


@dataclass(frozen=True)
class MatchScore:
    true_positives: int
    predictions: int
    truths: int
    precision_bp: int
    recall_bp: int
    f1_bp: int


def area(box: Box) -> int:
    x0, y0, x1, y1 = box
    return (x1 - x0) * (y1 - y0)


def intersection_union(a: Box, b: Box) -> tuple[int, int]:
    """The intersection and union areas of two half-open boxes (union > 0 for valid boxes)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = w * h if w > 0 and h > 0 else 0
    return inter, area(a) + area(b) - inter


def check_box(box: Box) -> None:
    """Refuse a box that is not ``x0 < x1``, ``y0 < y1`` in non-negative integers."""
    if len(box) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in box):
        raise ValueError(f"a box is four integers (x0, y0, x1, y1), not {box!r}")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise ValueError(f"box {box!r} is not half-open with 0 <= x0 < x1 and 0 <= y0 < y1")


def match_case(predictions: Sequence[Prediction], truths: Sequence[Box]) -> list[int | None]:
    """For each prediction, in submission order, the index of the true box it matched, or None."""
    for p in predictions:
        check_box(p.box)
    for t in truths:
        check_box(t)
    order = sorted(range(len(predictions)), key=lambda i: -predictions[i].score)  # stable
    taken = [False] * len(truths)
    matched: list[int | None] = [None] * len(predictions)
    for i in order:
        best: int | None = None
        best_inter, best_union = 0, 1
        for j, truth in enumerate(truths):
            if taken[j]:
                continue
            inter, union = intersection_union(predictions[i].box, truth)
            if 2 * inter < union:
                continue
            # Strictly greater: an equal IoU leaves the lower index in place.
            if best is None or inter * best_union > best_inter * union:
                best, best_inter, best_union = j, inter, union
        if best is not None:
            taken[best] = True
            matched[i] = best
    return matched


def score_counts(true_positives: int, predictions: int, truths: int) -> MatchScore:
    """Precision, recall and F1 in basis points from summed counts (module doc for the rules)."""
    if not 0 <= true_positives <= min(predictions, truths):
        raise ValueError(
            f"{true_positives} true positives among {predictions} predictions and {truths} truths"
        )
    if predictions == 0 and truths == 0:
        precision = recall = f1 = BASIS_POINTS
    elif predictions == 0 or truths == 0:
        precision = recall = f1 = 0
    else:
        precision = BASIS_POINTS * true_positives // predictions
        recall = BASIS_POINTS * true_positives // truths
        f1 = 2 * BASIS_POINTS * true_positives // (predictions + truths)
    return MatchScore(true_positives, predictions, truths, precision, recall, f1)


def score_cases(cases: Sequence[tuple[Sequence[Prediction], Sequence[Box]]]) -> MatchScore:
    """Match every case on its own, then score the summed counts."""
    tp = n_pred = n_true = 0
    for predictions, truths in cases:
        tp += sum(m is not None for m in match_case(predictions, truths))
        n_pred += len(predictions)
        n_true += len(truths)
    return score_counts(tp, n_pred, n_true)
