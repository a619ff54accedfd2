"""The resolved training configuration: every knob, with the measured defaults, in one place.

It is saved whole in the card (`training.params`), so a package says how to rebuild it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from training.anomaly import CoresetConfig
from training.backbones import DEFAULT_BACKBONE
from training.classifier_train import ClassifierConfig
from training.patchcore import PatchCoreConfig

Kind = Literal["anomaly", "classifier"]
Resize = Literal["stretch", "letterbox", "center_crop"]
Color = Literal["auto", "rgb", "gray"]


@dataclass(frozen=True)
class SplitConfig:
    #: Share of train/good held out for calibration (MVTec layout; labeled folders are split
    #: by inspector.core.datasets.scan, the split `inspector evaluate` uses too).
    val_fraction: float = 0.1
    #: Classifier on the MVTec layout: how test/<defect> images are shared between
    #: (train, val, test), per defect type. Test goods stay in test.
    classifier_defect_split: tuple[float, float, float] = (0.5, 0.15, 0.35)


@dataclass(frozen=True)
class TrainConfig:
    kind: Kind = "anomaly"
    backbone: str = DEFAULT_BACKBONE
    #: Backbone stages to tap (None = the backbone's default taps).
    layers: tuple[int, ...] | None = None
    seed: int = 0
    width: int = 224
    height: int = 224
    resize: Resize = "stretch"
    color: Color = "auto"
    patchcore: PatchCoreConfig = field(default_factory=PatchCoreConfig)
    coreset: CoresetConfig = field(default_factory=CoresetConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    #: Threshold: target false-reject rate on validation goods (used without val defects).
    target_frr: float = 0.01
    #: Threshold: target escape rate on validation defects (overrides best F1 when set).
    target_escape: float | None = None
    #: Export fails when ONNX and PyTorch scores differ by more than this (relative).
    parity_tolerance: float = 1e-3
    opset: int = 18
    batch_size: int = 16

    def to_params(self) -> dict[str, Any]:
        """JSON-ready dict for the card; only the parts that apply to this kind."""
        params = asdict(self)
        if self.kind == "anomaly":
            params.pop("classifier")
            params["split"].pop("classifier_defect_split")
        else:
            params.pop("patchcore")
            params.pop("coreset")
        params["split"]["seed"] = self.seed
        return params

    def split_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `training.datasets.load_splits`."""
        return {
            "seed": self.seed,
            "val_fraction": self.split.val_fraction,
            "classifier_defect_split": (
                self.split.classifier_defect_split if self.kind == "classifier" else None
            ),
        }
