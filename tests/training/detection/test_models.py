"""Models by name: built from scratch with nothing downloaded, and usable as detectors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.detection.models import (
    MODELS,
    UnknownModel,
    build_model,
    model_names,
    parameter_count,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the machine is shared; these tests are about shapes, not speed


def _target() -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor([[60.0, 80.0, 100.0, 124.0]]),
        "labels": torch.tensor([1], dtype=torch.int64),
    }


def test_it_knows_the_small_and_the_large_model() -> None:
    assert model_names() == ["fasterrcnn_resnet50_fpn_v2", "fcos_tiny"]


def test_it_refuses_an_unknown_name_listing_the_known_ones() -> None:
    with pytest.raises(UnknownModel, match="'yolo'.*fasterrcnn_resnet50_fpn_v2, fcos_tiny"):
        build_model("yolo", num_classes=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 1, "in_channels": 0}, "in_channels"),
        ({"num_classes": 1, "image_size": 250}, "multiple of 32"),
    ],
)
def test_it_refuses_impossible_settings(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model("fcos_tiny", **kwargs)


def test_it_builds_the_small_model_at_about_0_6_million_parameters() -> None:
    model = build_model("fcos_tiny", num_classes=1)
    assert 600_000 <= parameter_count(model) <= 800_000


def test_it_builds_the_same_small_model_from_the_same_seed() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("fcos_tiny", num_classes=2, seed=7).state_dict()
    b = build_model("fcos_tiny", num_classes=2, seed=7).state_dict()
    c = build_model("fcos_tiny", num_classes=2, seed=8).state_dict()
    assert torch.equal(torch.rand(1), before)  # the global RNG is left as it was
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_it_detects_with_the_small_model_in_eval_mode() -> None:
    model = build_model("fcos_tiny", num_classes=1, seed=0).eval()
    with torch.no_grad():
        (out,) = model(torch.rand(1, 1, 256, 256))
    assert set(out) == {"boxes", "scores", "labels"}
    assert out["boxes"].shape[1:] == (4,)
    assert out["scores"].shape == out["labels"].shape == out["boxes"].shape[:1]


def test_it_returns_finite_losses_from_the_small_model_in_train_mode() -> None:
    model = build_model("fcos_tiny", num_classes=1, seed=0).train()
    losses = model(torch.rand(1, 1, 256, 256), [_target()])
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()


def test_it_builds_the_large_model_for_single_channel_images() -> None:
    model = build_model("fasterrcnn_resnet50_fpn_v2", num_classes=1)
    assert 40_000_000 <= parameter_count(model) <= 45_000_000
    conv1 = model.get_submodule("backbone.body.conv1")
    assert isinstance(conv1, torch.nn.Conv2d) and conv1.in_channels == 1
    model.eval()
    with torch.no_grad():
        (out,) = model(torch.rand(1, 1, 256, 256))
    assert set(out) == {"boxes", "scores", "labels"}


def test_it_returns_finite_losses_from_the_large_model_in_train_mode() -> None:
    model = build_model("fasterrcnn_resnet50_fpn_v2", num_classes=1, image_size=256, seed=0)
    losses = model.train()(torch.rand(1, 1, 256, 256), [_target()])
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} == set(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_it_downloads_nothing() -> None:
    # A torch hub directory that cannot be written to: any download would fail loudly.
    code = (
        "import os, torch\n"
        "from training.detection.models import MODELS, build_model\n"
        "for name in MODELS: build_model(name, num_classes=1)\n"
        "hub = torch.hub.get_dir()\n"
        "assert not os.path.exists(hub), os.listdir(hub)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCH_HOME": "/nonexistent/torch-home"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_it_names_a_default_image_size_for_every_model() -> None:
    assert {name: spec.image_size for name, spec in MODELS.items()} == {
        "fcos_tiny": 256,
        "fasterrcnn_resnet50_fpn_v2": 512,
    }
