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
    #: by inspector.core.datasets.scan, the split `inspector evaluate` uses too). None: 0 for
    #: the anomaly model, which calibrates on leave-one-out scores of all training goods
    #: instead, and 0.1 for the classifier, which needs validation goods for early stopping.
    val_fraction: float | None = None
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
    #: Side of the square model input, or with `aspect="auto"` the side of a square of the
    #: same area as the (possibly oblong) input.
    image_size: int = 224
    #: "auto": oblong input matching the training images' median aspect ratio when it is
    #: outside [3/4, 4/3] (fixed-camera lines: no distortion, no wasted border); "square".
    aspect: Literal["auto", "square"] = "auto"
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
        params["split"]["val_fraction"] = self.resolved_val_fraction
        return params

    @property
    def resolved_val_fraction(self) -> float:
        if self.split.val_fraction is not None:
            return self.split.val_fraction
        return 0.0 if self.kind == "anomaly" else 0.1

    def split_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `training.datasets.load_splits`."""
        return {
            "seed": self.seed,
            "val_fraction": self.resolved_val_fraction,
            "classifier_defect_split": (
                self.split.classifier_defect_split if self.kind == "classifier" else None
            ),
        }
