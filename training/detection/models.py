"""Detection models by name: a training config names one, ``build_model`` builds it.

Every model is built from scratch (``weights=None``, ``weights_backbone=None``):
nothing is downloaded, so a node with no network builds the same model, and a
seed makes the initial weights reproducible.

- ``fcos_tiny``: FCOS on a small custom backbone (3x3 convolutions with GroupNorm)
  with an FPN over strides 8, 16 and 32 (about 0.6 M parameters), sized to train
  on 2 CPU cores in minutes (FACTS.md measured a model of this kind at ~35 img/s,
  256x256, batch 8; its own speed and accuracy are the bench's to report): tests,
  the demo, the bench.
- ``fasterrcnn_resnet50_fpn_v2``: torchvision's Faster R-CNN with a
  ResNet-50-FPN v2 backbone (about 43 M parameters), for GPU nodes.

``num_classes`` counts lesion classes only; labels run from 1 to ``num_classes``
in targets and predictions alike (0 is torchvision's background). Images are
single-channel (windowed CT) unless ``in_channels`` says otherwise.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, fasterrcnn_resnet50_fpn_v2
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

# The tiny backbone's stages as (width, 3x3 convolutions), at strides 2, 4, 8, 16, 32; the
# FPN reads the last three. Full-resolution stages get one convolution: they cost the most.
TINY_STAGES = ((16, 1), (32, 1), (48, 2), (96, 2), (160, 2))
TINY_FPN_CHANNELS = 32
TINY_GROUP_CHANNELS = 8  # channels per GroupNorm group in the tiny backbone
TINY_HEAD_CONVS = 2  # torchvision's FCOS has 4 per branch; over three levels they dominate


class UnknownModel(ValueError):
    """A config names a model this build does not know."""


@dataclass(frozen=True)
class ModelSpec:
    """What a name stands for: how to build it and the image side it expects by default."""

    name: str
    description: str
    image_size: int
    build: Callable[[int, int, int], nn.Module]  # (num_classes, in_channels, image_size)


def _conv_gn(cin: int, cout: int, stride: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: it has no running statistics to average and does not depend
    # on the batch, which suits federated training over non-IID hospitals (Hsieh et al.,
    # "The Non-IID Data Quagmire", ICML 2020) and small local batches. Measured on the quality
    # bench (docs/federated.md): FedAvg 0.158 -> 0.299 mAP@0.5, centralized 0.633 -> 0.629.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(max(1, cout // TINY_GROUP_CHANNELS), cout),
        nn.ReLU(inplace=True),
    )


class TinyFPNBackbone(nn.Module):
    """Five strided stages of 3x3 convolutions (``TINY_STAGES``), then an FPN over the last three.

    Returns ``{"p3", "p4", "p5"}`` (strides 8, 16, 32), each ``TINY_FPN_CHANNELS`` wide,
    as torchvision's detectors expect from a backbone with an ``out_channels`` attribute.
    """

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        cin = in_channels
        for width, convs in TINY_STAGES:
            layers = [_conv_gn(cin, width, 2)] + [
                _conv_gn(width, width, 1) for _ in range(convs - 1)
            ]
            stages.append(nn.Sequential(*layers))
            cin = width
        self.stages = nn.ModuleList(stages)
        self.fpn = FeaturePyramidNetwork([w for w, _ in TINY_STAGES[2:]], TINY_FPN_CHANNELS)
        self.out_channels = TINY_FPN_CHANNELS

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for level, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if level >= 3:
                features[f"p{level}"] = x
        return dict(self.fpn(features))


def _normalisation(in_channels: int) -> tuple[list[float], list[float]]:
    # Inputs are already windowed to [0, 1]; centre them without per-dataset statistics.
    return [0.5] * in_channels, [0.25] * in_channels


def _fcos_tiny(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    mean, std = _normalisation(in_channels)
    # One anchor per location, its side the level's stride: FCOS assigns boxes to levels by it.
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,)), aspect_ratios=((1.0,),) * 3)
    backbone = TinyFPNBackbone(in_channels)
    classes = num_classes + 1  # column 0 (background) is never a target
    return FCOS(
        backbone,
        num_classes=classes,
        head=FCOSHead(backbone.out_channels, 1, classes, num_convs=TINY_HEAD_CONVS),
        min_size=image_size,
        max_size=image_size,  # no resizing: the reader hands over image_size squares
        image_mean=mean,
        image_std=std,
        anchor_generator=anchors,
        detections_per_img=100,
        _skip_resize=True,  # training images are already image_size: an identity resize costs ~10 %
    )


def _fasterrcnn_resnet50_fpn_v2(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    mean, std = _normalisation(in_channels)
    model = fasterrcnn_resnet50_fpn_v2(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes + 1,
        min_size=image_size,
        max_size=image_size,
        image_mean=mean,
        image_std=std,
    )
    if in_channels != 3:
        body = model.backbone.body
        old = body.conv1
        body.conv1 = nn.Conv2d(
            in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
        )
    assert isinstance(model, FasterRCNN)
    return model


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "fcos_tiny",
            "FCOS on a tiny FPN backbone (~0.6 M parameters), for 2 CPU cores",
            256,
            _fcos_tiny,
        ),
        ModelSpec(
            "fasterrcnn_resnet50_fpn_v2",
            "torchvision Faster R-CNN, ResNet-50-FPN v2 backbone (~43 M parameters), for GPUs",
            512,
            _fasterrcnn_resnet50_fpn_v2,
        ),
    )
}


def model_names() -> list[str]:
    """The names a training config may use, sorted."""
    return sorted(MODELS)


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 1,
    image_size: int | None = None,
    seed: int | None = None,
) -> nn.Module:
    """A freshly initialised detector, nothing downloaded.

    With ``seed``, the initial weights depend on it alone (torch's global RNG is
    left as it was), so every node builds the same base model from a round's seed.
    ``image_size`` defaults to the model's own (256 for ``fcos_tiny``, 512 for
    ``fasterrcnn_resnet50_fpn_v2``).
    """
    spec = MODELS.get(name)
    if spec is None:
        known = ", ".join(model_names())
        raise UnknownModel(f"unknown model {name!r}: the training config must name one of {known}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1 (lesion classes), not {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, not {in_channels}")
    size = spec.image_size if image_size is None else image_size
    if size < 32 or size % 32:
        raise ValueError(
            f"image_size must be a positive multiple of 32 (the coarsest stride), not {size}"
        )
    if seed is None:
        return spec.build(num_classes, in_channels, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.build(num_classes, in_channels, size)


def parameter_count(model: nn.Module) -> int:
    """Trainable and frozen parameters together (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())
