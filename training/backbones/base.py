"""A pretrained CNN cut into stages, so that models can tap intermediate feature maps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from inspector.core.package import sha256_file
from training.errors import TrainingError


@dataclass(frozen=True)
class WeightsInfo:
    """Which pretrained weights a backbone carries, for the card's provenance."""

    name: str
    path: Path | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def sha256(self) -> str | None:
        return sha256_file(self.path) if self.path is not None and self.path.is_file() else None


class Backbone(nn.Module):
    """Sequential stages of a CNN.

    `forward(x)` takes a normalised float batch [N, 3, H, W] and returns the outputs of the
    stages listed in `taps` (only the stages up to the last tap run), which is what the patch
    models use. `forward_last(x)` runs every stage and returns the final feature map, which
    the classifier pools.
    """

    def __init__(
        self,
        name: str,
        stages: Sequence[nn.Module],
        taps: Sequence[int],
        weights: WeightsInfo,
    ) -> None:
        super().__init__()
        self.name = name
        self.stages = nn.ModuleList(stages)
        self.weights = weights
        self.taps: tuple[int, ...] = ()
        self.set_taps(taps)
        with torch.no_grad():
            outs = self._run(torch.zeros(1, 3, 64, 64), len(self.stages) - 1)
        #: Channels and stride (relative to the input) of every stage's output.
        self.channels = [int(o.shape[1]) for o in outs]
        self.strides = [64 // int(o.shape[-1]) for o in outs]
        self.eval()

    def set_taps(self, taps: Sequence[int]) -> None:
        taps = tuple(sorted(set(int(t) for t in taps)))
        if not taps or taps[0] < 0 or taps[-1] >= len(self.stages):
            raise TrainingError(
                f"{self.name}: layers must be stage indices in 0..{len(self.stages) - 1}, "
                f"got {taps}"
            )
        self.taps = taps

    def _run(self, x: torch.Tensor, upto: int) -> list[torch.Tensor]:
        outs = []
        for i, stage in enumerate(self.stages):
            if i > upto:
                break
            x = stage(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = self._run(x, self.taps[-1])
        return [outs[i] for i in self.taps]

    def forward_last(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, len(self.stages) - 1)[-1]

    @property
    def last_channels(self) -> int:
        return self.channels[-1]

    def describe_taps(self) -> str:
        return ", ".join(
            f"stage {t} (stride {self.strides[t]}, {self.channels[t]} ch)" for t in self.taps
        )


class Normalise(nn.Module):
    """uint8 NHWC -> float NCHW normalised with the backbone's mean and std, inside the graph."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        # Fold /255, mean and std into one scale and shift: x * scale + shift.
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", 1.0 / (255.0 * s))
        self.register_buffer("shift", -m / s)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        return x * self.scale + self.shift
