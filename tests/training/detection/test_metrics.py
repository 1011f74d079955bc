"""mAP through torchmetrics + pycocotools, checked against figures worked out by hand."""

from __future__ import annotations

import pytest
import torch

from training.detection.metrics import NothingToScore, mean_average_precision


def _pred(boxes: list[list[float]], scores: list[float]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.ones(len(scores), dtype=torch.int64),
    }


def _truth(boxes: list[list[float]]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.ones(len(boxes), dtype=torch.int64),
    }


def test_a_perfect_detector_scores_one() -> None:
    box = [10, 10, 30, 40]
    result = mean_average_precision([_pred([box], [0.9])], [_truth([box])])
    assert result == {"map_50": 1.0, "map": 1.0, "mar_100": 1.0}


def test_a_hand_worked_case() -> None:
    # Image 1: one prediction at IoU 0.62 (a match at thresholds 0.50, 0.55 and 0.60 only).
    # Image 2: a lower-scored false positive, and its true box is missed.
    # At IoU 0.5: precision 1 up to recall 0.5, then nothing: 51 of COCO's 101 recall points.
    predictions = [_pred([[0, 0, 100, 62]], [0.9]), _pred([[200, 200, 220, 220]], [0.8])]
    targets = [_truth([[0, 0, 100, 100]]), _truth([[10, 10, 30, 30]])]
    result = mean_average_precision(predictions, targets)
    assert result["map_50"] == pytest.approx(51 / 101, abs=1e-6)
    assert result["map"] == pytest.approx(3 / 10 * 51 / 101, abs=1e-6)
    assert result["mar_100"] == pytest.approx(3 / 10 * 1 / 2, abs=1e-6)


def test_images_without_lesions_count_their_false_positives() -> None:
    clean = mean_average_precision([_pred([[0, 0, 8, 8]], [0.9])], [_truth([[0, 0, 8, 8]])])
    with_fp = mean_average_precision(
        [_pred([[0, 0, 8, 8]], [0.5]), _pred([[0, 0, 8, 8]], [0.9])],
        [_truth([[0, 0, 8, 8]]), _truth([])],
    )
    assert clean["map_50"] == 1.0
    assert with_fp["map_50"] == pytest.approx(0.5, abs=1e-6)  # precision 1/2 at every recall


def test_it_refuses_what_it_cannot_score() -> None:
    with pytest.raises(NothingToScore, match="no image has a true box"):
        mean_average_precision([_pred([], [])], [_truth([])])
    with pytest.raises(ValueError, match="2 predictions for 1 images"):
        mean_average_precision([_pred([], [])] * 2, [_truth([[0, 0, 1, 1]])])
