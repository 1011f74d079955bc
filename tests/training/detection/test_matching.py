"""The integer box-matching rule, against pycocotools' own matching as the oracle."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.examples import examples
from training.detection.matching import (
    Box,
    Prediction,
    intersection_union,
    match_case,
    score_cases,
    score_counts,
)


def coco_matches(predictions: Sequence[Prediction], truths: Sequence[Box]) -> list[int | None]:
    """pycocotools' evaluateImg at IoU 0.5: the true-box index each prediction matched."""

    def dataset(annotations: list[dict]) -> COCO:
        coco = COCO()
        coco.dataset = {
            "images": [{"id": 1}],
            "categories": [{"id": 1}],
            "annotations": annotations,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def ann(index: int, box: Box, **extra: object) -> dict:
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        return {"id": index + 1, "image_id": 1, "category_id": 1, "bbox": [x0, y0, w, h],
                "area": w * h, "iscrowd": 0, **extra}  # fmt: skip

    gt = dataset([ann(j, t) for j, t in enumerate(truths)])
    dt = dataset([ann(i, p.box, score=p.score) for i, p in enumerate(predictions)])
    evaluation = COCOeval(gt, dt, "bbox")
    evaluation.params.iouThrs = np.array([0.5])
    evaluation.params.maxDets = [100]
    evaluation.params.areaRng = [[0, 1e10]]
    evaluation.params.areaRngLbl = ["all"]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
    matched: list[int | None] = [None] * len(predictions)
    result = evaluation.evalImgs[0]
    if result is None:  # neither predictions nor truths
        return matched
    for dt_id, gt_id in zip(result["dtIds"], result["dtMatches"][0], strict=True):
        matched[dt_id - 1] = int(gt_id) - 1 if gt_id else None
    return matched


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    x0, y0 = draw(st.integers(0, 24)), draw(st.integers(0, 24))
    return x0, y0, x0 + draw(st.integers(1, 12)), y0 + draw(st.integers(1, 12))


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Prediction], list[Box]]:
    truths = draw(st.lists(boxes(), max_size=6))
    predictions = []
    for _ in range(draw(st.integers(0, 8))):
        if truths and draw(st.booleans()):  # near a true box, so that matches happen
            x0, y0, x1, y1 = draw(st.sampled_from(truths))
            dx, dy = draw(st.integers(-2, 2)), draw(st.integers(-2, 2))
            box = (max(x0 + dx, 0), max(y0 + dy, 0), x1 + dx + draw(st.integers(0, 2)),
                   y1 + dy + draw(st.integers(0, 2)))  # fmt: skip
            box = (box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1))
        else:
            box = draw(boxes())
        predictions.append(Prediction(box, draw(st.integers(0, 4))))  # few scores: ties
    return predictions, truths


def _rules_coincide(predictions: Sequence[Prediction], truths: Sequence[Box]) -> bool:
    """No prediction sees two true boxes at the same IoU >= 0.5, and floats agree on 0.5."""
    for p in predictions:
        seen: list[tuple[int, int]] = []
        for t in truths:
            inter, union = intersection_union(p.box, t)
            if (inter / union >= 0.5) != (2 * inter >= union):
                return False
            if 2 * inter >= union:
                if any(inter * u == i * union for i, u in seen):
                    return False
                seen.append((inter, union))
    return True


@settings(max_examples=examples(200), deadline=None)
@given(cases())
def test_it_matches_as_pycocotools_does_where_the_rules_coincide(case) -> None:
    predictions, truths = case
    assume(_rules_coincide(predictions, truths))
    assert match_case(predictions, truths) == coco_matches(predictions, truths)


def test_on_an_iou_tie_it_takes_the_lower_index_where_pycocotools_takes_the_later() -> None:
    truths = [(0, 0, 10, 8), (0, 2, 10, 10)]
    # The first prediction overlaps both at IoU 0.8; the second only the first true box (0.75
    # against 0.4), so which box the first takes decides whether the second matches at all.
    predictions = [Prediction((0, 0, 10, 10), 9), Prediction((0, 0, 10, 6), 5)]
    assert match_case(predictions, truths) == [0, None]
    assert coco_matches(predictions, truths) == [1, 0]
    assert score_cases([(predictions, truths)]).true_positives == 1


def test_it_decides_iou_0_5_exactly_in_integers() -> None:
    truth = (0, 0, 10, 10)
    at_half = Prediction((0, 0, 10, 5), 1)  # 50 / 100
    under = Prediction((0, 0, 9, 5), 1)  # 45 / 100
    assert match_case([at_half], [truth]) == [0] == coco_matches([at_half], [truth])
    assert match_case([under], [truth]) == [None] == coco_matches([under], [truth])


def test_it_prefers_the_higher_iou_not_the_first_box() -> None:
    truths = [(0, 0, 10, 6), (0, 0, 10, 9)]  # IoU 0.6 and 0.9 with the prediction
    assert match_case([Prediction((0, 0, 10, 10), 1)], truths) == [1]


def test_higher_scores_choose_first_and_equal_scores_keep_submission_order() -> None:
    truth = [(0, 0, 10, 10)]
    low_first = [Prediction((0, 0, 10, 9), 1), Prediction((0, 0, 10, 8), 2)]
    assert match_case(low_first, truth) == [None, 0]
    tied = [Prediction((0, 0, 10, 8), 3), Prediction((0, 0, 10, 10), 3)]
    assert match_case(tied, truth) == [0, None]  # the better box came second: too late
    assert coco_matches(tied, truth) == [0, None]


def test_it_scores_counts_in_basis_points_rounded_down() -> None:
    score = score_counts(2, 3, 7)
    assert (score.precision_bp, score.recall_bp, score.f1_bp) == (6666, 2857, 4000)
    score = score_counts(1, 3, 3)  # F1 from the exact ratios: 2 * 1 / 6, not from 3333 and 3333
    assert (score.precision_bp, score.recall_bp, score.f1_bp) == (3333, 3333, 3333)
    assert score_counts(5, 5, 5).f1_bp == 10_000


@pytest.mark.parametrize(
    ("predictions", "truths", "expected"),
    [(0, 0, 10_000), (0, 4, 0), (4, 0, 0)],
)
def test_it_defines_the_empty_cases(predictions: int, truths: int, expected: int) -> None:
    score = score_counts(0, predictions, truths)
    assert score.precision_bp == score.recall_bp == score.f1_bp == expected


def test_it_sums_counts_over_cases_before_dividing() -> None:
    hit = ([Prediction((0, 0, 4, 4), 1)], [(0, 0, 4, 4)])
    miss = ([Prediction((20, 20, 24, 24), 1), Prediction((30, 30, 34, 34), 1)], [(0, 0, 4, 4)])
    score = score_cases([hit, miss, ([], [])])
    assert (score.true_positives, score.predictions, score.truths) == (1, 3, 2)
    assert (score.precision_bp, score.recall_bp, score.f1_bp) == (3333, 5000, 4000)


@pytest.mark.parametrize(
    "box",
    [(5, 0, 5, 4), (0, 4, 3, 2), (-1, 0, 3, 3), (0.0, 0, 3, 3), (0, 0, 3), (True, 0, 3, 3)],
)
def test_it_refuses_boxes_that_are_not_half_open_integers(box) -> None:
    with pytest.raises(ValueError, match="box"):
        match_case([Prediction(box, 1)], [])


def test_it_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="true positives"):
        score_counts(3, 2, 5)
