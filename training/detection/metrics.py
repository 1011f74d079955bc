"""COCO mean average precision over a set of images, as plain floats.

A thin wrapper over torchmetrics' ``MeanAveragePrecision`` with the pycocotools
backend, so the figures are the ones every detection paper reports, computed by
the reference implementation rather than by us. Boxes are ``xyxy`` pixel
coordinates: a half-open integer box ``(x0, y0, x1, y1)`` (DESIGN.md) is the
same rectangle with area ``(x1 - x0) * (y1 - y0)``, which is what pycocotools
computes from ``xywh`` too, so no +1 sneaks in.

This is the quality a training run reports; the leaderboard's precision, recall
and F1 come from the integer matching rule in ``training.detection.matching``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchmetrics.detection import MeanAveragePrecision

Detections = Mapping[str, torch.Tensor]  # boxes (N, 4) xyxy, scores (N,), labels (N,)
Targets = Mapping[str, torch.Tensor]  # boxes (M, 4) xyxy, labels (M,)


class NothingToScore(ValueError):
    """No image has a true box: mAP is undefined (pycocotools would report -1)."""


def mean_average_precision(
    predictions: Sequence[Detections], targets: Sequence[Targets]
) -> dict[str, float]:
    """``map_50`` (IoU 0.5) and ``map`` (IoU 0.5:0.95 in steps of 0.05), plus ``mar_100``.

    ``predictions[i]`` and ``targets[i]`` describe the same image, as torchvision's
    detectors return and take them. At most 100 detections per image count (COCO's
    rule); extra low-scoring ones are ignored, not an error.
    """
    if len(predictions) != len(targets):
        raise ValueError(
            f"{len(predictions)} predictions for {len(targets)} images: one each is needed"
        )
    if not any(len(t["boxes"]) for t in targets):
        raise NothingToScore("no image has a true box, so mean average precision is undefined")
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update(
        [
            {
                "boxes": p["boxes"].detach().to("cpu", torch.float32),
                "scores": p["scores"].detach().to("cpu", torch.float32),
                "labels": p["labels"].detach().to("cpu", torch.int64),
            }
            for p in predictions
        ],
        [
            {
                "boxes": t["boxes"].detach().to("cpu", torch.float32),
                "labels": t["labels"].detach().to("cpu", torch.int64),
            }
            for t in targets
        ],
    )
    result = metric.compute()
    return {key: float(result[key]) for key in ("map_50", "map", "mar_100")}
