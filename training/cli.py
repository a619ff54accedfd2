"""`training.cli.train_command`: the plain-Python function behind `inspector train`.

Typed keyword arguments; `inspector train --set key=value` maps onto the model knobs by name
(e.g. `--set image_size=320 --set coreset=0.02 --set layers=[8,11,15]`). Every expected
failure is an `InspectorError` (DatasetError, TrainingError, ExportError, ModelPackageError)
with a message fit to print and a hint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from training.anomaly import CoresetConfig
from training.backbones import DEFAULT_BACKBONE
from training.classifier_train import ClassifierConfig
from training.config import Color, Kind, Resize, SplitConfig, TrainConfig
from training.errors import TrainingError
from training.patchcore import PatchCoreConfig
from training.train import TrainResult, run_training


def train_command(
    *,
    data: Path | str,
    out: Path | str,
    kind: Kind = "anomaly",
    backbone: str | None = None,
    seed: int = 0,
    image_size: int = 224,
    aspect: Literal["auto", "square"] = "auto",
    resize: Resize = "stretch",
    color: Color = "auto",
    layers: Sequence[int] | None = None,
    pool: int = 3,
    coreset: float = 0.1,
    coreset_max: int = 16000,
    sigma: float = 4.0,
    score_top: float = 0.1,
    epochs: int = 20,
    patience: int = 4,
    lr: float = 5e-4,
    max_minutes: float = 20.0,
    defect_split: Sequence[float] = (0.5, 0.15, 0.35),
    val_fraction: float | None = None,
    target_frr: float = 0.01,
    target_escape: float | None = None,
    batch_size: int = 16,
) -> TrainResult:
    """Train a model package into `out` (models/<name>/<version>) from the data set at `data`,
    then evaluate it on the test split through inspector.core (metrics in the card, plots in
    report/).

    kind: "anomaly" (PatchCore, good images only) or "classifier" (needs defect images).
    backbone: None/`effnet_lite0` (offline default), or a torchvision name: `resnet18`,
      `resnet50`, `wide_resnet50_2`, `efficientnet_b0`..`b7`; `name@WEIGHTS` picks a weight
      enum member, e.g. `wide_resnet50_2@IMAGENET1K_V1`.
    image_size, aspect: the model input is image_size x image_size, or with aspect="auto" and
      training images whose median aspect ratio is beyond 4:3, an oblong input of the same
      area with that aspect (sides multiples of 32), so fixed-camera frames are not squashed.
    resize, color: how frames are fitted to the input (stretch, letterbox, center_crop) and
      gray handling ("auto": gray when the training images are).
    layers: backbone stages to tap (default: the backbone's own choice).
    pool: local-aware average pooling of patch features (3 = 3x3, 1 = off).
    coreset, coreset_max: memory bank = `coreset` of all training patches, at most
      `coreset_max` (bounds inference time).
    sigma: Gaussian smoothing of the map in pixels. score_top: image score = mean of the top
      `score_top` fraction of the map (0 = its maximum).
    epochs, patience, lr, max_minutes: classifier fine-tuning.
    defect_split: MVTec layout + classifier: per-type share of test/<defect> images for
      (train, val, test); test goods stay in test.
    val_fraction: share of train/good held out (MVTec layout). Default: none for the anomaly
      model, whose threshold comes from leave-one-out scores of all training goods; 0.1 for
      the classifier (early stopping needs validation goods).
    target_frr / target_escape: threshold calibration targets on validation.
    """
    split = tuple(float(v) for v in defect_split)
    if len(split) != 3 or abs(sum(split) - 1.0) > 1e-6:
        raise TrainingError(
            f"defect_split must be three fractions summing to 1, got {list(defect_split)}",
            hint="e.g. --set defect_split=[0.5,0.15,0.35]",
        )
    config = TrainConfig(
        kind=kind,
        backbone=backbone or DEFAULT_BACKBONE,
        layers=tuple(int(v) for v in layers) if layers else None,
        seed=seed,
        image_size=image_size,
        aspect=aspect,
        resize=resize,
        color=color,
        patchcore=PatchCoreConfig(pool=pool, sigma=sigma, score_top_fraction=score_top),
        coreset=CoresetConfig(fraction=coreset, max_size=coreset_max),
        classifier=ClassifierConfig(
            max_epochs=epochs,
            patience=patience,
            lr=lr,
            max_minutes=max_minutes,
            batch_size=batch_size,
        ),
        split=SplitConfig(val_fraction=val_fraction, classifier_defect_split=split),
        target_frr=target_frr,
        target_escape=target_escape,
        batch_size=batch_size,
    )
    return run_training(data, out, config)
