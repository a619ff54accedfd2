"""torchvision backbones with ImageNet weights through their weight enums.

The weights come from torch's cache (`$TORCH_HOME/hub/checkpoints`) when present, and are
downloaded otherwise; without a cache and without internet the error says how to proceed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models

from training.backbones.base import Backbone, WeightsInfo
from training.errors import TrainingError


def _weights_enum(arch: str, member: str | None) -> Any:
    enum = models.get_model_weights(arch)
    if member is None:
        return enum.DEFAULT
    try:
        return enum[member]
    except KeyError:
        choices = ", ".join(m.name for m in enum)
        raise TrainingError(
            f"{arch}: unknown weights {member!r}", hint=f"choose one of {choices}"
        ) from None


def _cached_path(weights: Any) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _build(arch: str, member: str | None, pretrained: bool) -> tuple[nn.Module, WeightsInfo]:
    weights = _weights_enum(arch, member)
    mean = tuple(weights.transforms().mean)
    std = tuple(weights.transforms().std)
    if not pretrained:
        model = models.get_model(arch, weights=None)
        return model, WeightsInfo(f"{arch} (random init)", None, mean, std)
    path = _cached_path(weights)
    try:
        model = models.get_model(arch, weights=weights)
    except Exception as exc:  # URLError, HTTPError, SSL errors: all mean "could not fetch"
        raise TrainingError(
            f"cannot load {weights} for backbone {arch}: not in {path.parent} and the download "
            f"failed ({exc})",
            hint=f"copy {Path(weights.url).name} there from a machine with internet, "
            "or use the offline default backbone effnet_lite0",
        ) from exc
    info = WeightsInfo(f"torchvision {weights}", path, mean, std)
    return model, info


def resnet(arch: str, member: str | None = None, pretrained: bool = True) -> Backbone:
    """ResNet family: stem, layer1..layer4 (strides 4, 4, 8, 16, 32); PatchCore taps 2 and 3."""
    model, info = _build(arch, member, pretrained)
    assert isinstance(model, models.ResNet)
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    stages = [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    return Backbone(arch, stages, taps=(2, 3), weights=info)


def efficientnet(arch: str, member: str | None = None, pretrained: bool = True) -> Backbone:
    """torchvision EfficientNet: its `features` stages 0..8; taps at strides 8 and 16."""
    model, info = _build(arch, member, pretrained)
    assert isinstance(model, models.EfficientNet)
    stages = list(model.features)
    return Backbone(arch, stages, taps=(3, 5), weights=info)
