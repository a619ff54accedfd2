"""What a fit step takes and gives back, the same for every model kind.

Each kind (training/patchcore/fit.py, training/classifier/fit.py) offers a `FitStep`: which
training images it reads, and `fit`, which returns the PyTorch model to export and a way to
get the scores its threshold is chosen on. `training.train` runs the steps around it (read,
export, parity, calibrate, card, evaluate) without knowing the kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from inspector.core.card import HeatmapSpec, InputSpec
from training.backbones import Backbone
from training.config import TrainConfig
from training.datasets import Sample, Splits
from training.images import LoadedImages

#: Runs uint8 images through the exported graph (ONNX Runtime, as the server will) and
#: returns its outputs by name.
ScoreFn = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class TrainData:
    splits: Splits
    spec: InputSpec
    train: LoadedImages
    val: LoadedImages


@dataclass(frozen=True)
class Calibration:
    """The scores the threshold is chosen on, and what they are, in words."""

    good: np.ndarray
    defect: np.ndarray | None
    data: str
    #: Maps of the goods on the score's scale (sets the heatmap colours), or None when the
    #: map is already on a fixed [0, 1] scale.
    good_maps: np.ndarray | None = None
    #: The map value that stands for the threshold when the score has another scale (a
    #: hybrid's score is a probability, its map PatchCore distances).
    map_threshold: float | None = None
    #: Defect images per type among `defect` (for the card).
    defect_per_type: dict[str, int] | None = None

    def heatmap(self, threshold: float) -> HeatmapSpec:
        """Blue at the median good pixel; red from the threshold or the highest good pixel,
        whichever is higher (the scale's top a quarter above it), so red marks only what no
        good part reached. The threshold alone would paint goods' local peaks red when the
        score is a mean over the map. Fixed [0, 1] for maps that are probabilities."""
        if self.good_maps is None:
            return HeatmapSpec(vmin=0.0, vmax=1.0)
        if self.map_threshold is not None:
            threshold = self.map_threshold
        values = np.asarray(self.good_maps, dtype=np.float64).ravel()
        vmin = float(np.median(values)) if values.size else 0.0
        red = max(threshold, float(values.max())) if values.size else threshold
        return HeatmapSpec(vmin=vmin, vmax=vmin + 1.25 * max(red - vmin, 1e-6))


@dataclass(frozen=True)
class Fitted:
    model: nn.Module
    labels: list[str]
    #: One line for the card's description.
    what: str
    #: Scores for the threshold, given a way to run the exported graph.
    calibration: Callable[[ScoreFn], Calibration]
    #: Kind-specific figures for the card (bank size, epochs run, why it stopped, ...).
    metrics: dict[str, Any] = field(default_factory=dict)
    #: Said loudly in the printed summary and the card (e.g. a time budget cut the run).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class FitStep:
    #: The training samples this kind reads (e.g. goods only).
    samples: Callable[[Splits], Sequence[Sample]]
    fit: Callable[[Backbone, TrainData, TrainConfig], Fitted]


def all_samples(splits: Splits) -> list[Sample]:
    """The training split whole, goods and defects (kinds that learn from defects)."""
    return list(splits.train)


def validation_scores(
    score: ScoreFn, val: LoadedImages, splits: Splits, *, maps: bool = False
) -> Calibration:
    """Validation images scored by the exported graph, split into goods and defects (with
    the goods' maps when the heatmap scale comes from them); a tiled image scores the maximum
    of its tiles, as at the line."""
    outputs = score(val.pixels)
    scores = val.frame_scores(outputs["score"])
    good = ~val.is_defect
    return Calibration(
        good=scores[good],
        defect=scores[~good] if (~good).any() else None,
        data=f"validation split of {splits.root} ({good.sum()} good, {(~good).sum()} defect)",
        good_maps=outputs["anomaly_map"][good[val.owners]] if maps else None,
    )
