"""From a data set folder to a verified model package: fit, export, calibrate, evaluate.

splits -> images (decoded and resized exactly as the server does) -> fit (PatchCore or
classifier) -> ONNX export + checker + parity -> threshold from validation scores run
through ONNX Runtime -> card.json -> load through inspector.core -> evaluation on test ->
metrics into the card, plots into report/.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.core.card import (
    ExportInfo,
    HeatmapSpec,
    InputSpec,
    ModelCard,
    Provenance,
    utcnow,
)
from inspector.core.card import write_card as write_card_file
from inspector.core.datasets import SPLIT_FILE
from inspector.core.errors import DatasetError
from inspector.core.package import CARD_FILE, MODEL_FILE, REPORT_DIR, load_model, sha256_file
from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions, load_onnx
from training.anomaly import fit_patchcore, leave_one_out
from training.backbones import build_backbone
from training.calibrate import calibrate, heatmap_scale
from training.classifier_train import History, train_classifier
from training.config import TrainConfig
from training.datasets import Sample, Splits, load_splits
from training.errors import TrainingError
from training.export import check_parity, export_onnx, parity
from training.images import LoadedImages, input_size, load_images, median_aspect
from training.provenance import code_revision, package_name_version, write_split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    out: Path
    #: The PyTorch model that was exported (for parity checks and notebooks).
    model: nn.Module
    card: ModelCard
    #: `inspector evaluate --json` figures on the test split (None without test images).
    evaluation: dict[str, Any] | None
    train_seconds: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _color_mode(splits: Splits, config: TrainConfig) -> str:
    """ "gray" when the training images are gray (all channels equal), unless configured."""
    if config.color != "auto":
        return config.color
    probe = InputSpec(width=64, height=64, resize="stretch", color="rgb")
    sample = load_images(splits.train[:16], probe, "checking colour").pixels.astype(np.int16)
    gray = bool(
        np.all(sample[..., 0] == sample[..., 1]) and np.all(sample[..., 1] == sample[..., 2])
    )
    return "gray" if gray else "rgb"


def _onnx_outputs(
    model_path: Path, spec: InputSpec, images: np.ndarray, names: list[str]
) -> dict[str, np.ndarray]:
    runtime = load_onnx(
        model_path, (spec.height, spec.width), RuntimeOptions(providers="cpu"), names
    )
    return runtime.run(images) if len(images) else {n: np.zeros((0,)) for n in names}


def _parity_images(
    val: LoadedImages, test: list[Sample], spec: InputSpec, n: int = 8
) -> np.ndarray:
    """Real images the model has not memorised, spread over the split so that goods and each
    defect type show up: validation first, then test."""

    def spread(count: int, k: int) -> list[int]:
        return sorted({int(i) for i in np.linspace(0, count - 1, num=min(k, count))})

    images = val.pixels[spread(len(val), n)] if len(val) else val.pixels
    if len(images) < n and test:
        picked = [test[i] for i in spread(len(test), n - len(images))]
        extra = load_images(picked, spec, "reading parity images").pixels
        images = np.concatenate([images, extra])
    return images


def run_training(data: Path | str, out: Path | str, config: TrainConfig) -> TrainResult:
    """Train a package into `out` (models/<name>/<version>) and evaluate it on the test split."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainingError(
            f"{out} already holds a model package", hint="choose a new version folder"
        )
    name, version = package_name_version(out)
    # Everything is written to a staging folder that becomes `out` only once the package
    # loads: a failed run leaves no half-written package behind.
    stage = out.parent / f".{out.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        result = _train_into(stage, data, config, name, version)
        if out.exists():
            out.rmdir()
        stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    evaluation = None
    card = result.card
    if result.splits.test:
        evaluation = evaluate_test(out, result.splits)
        metrics = dict(card.metrics)
        metrics.update({k: v for k, v in evaluation.items() if not isinstance(v, dict)})
        metrics["test_split"] = result.splits.describe()
        card = card.model_copy(update={"metrics": metrics})
        write_card_file(card, out / CARD_FILE)
    return TrainResult(out, result.model, card, evaluation, result.train_seconds)


@dataclass(frozen=True)
class _Trained:
    model: nn.Module
    card: ModelCard
    splits: Splits
    train_seconds: float


def _train_into(
    out: Path, data: Path | str, config: TrainConfig, name: str, version: str
) -> _Trained:
    """Fit, export, check parity, calibrate and write the card into `out`."""
    seed_everything(config.seed)
    splits = load_splits(data, **config.split_kwargs())
    for note in splits.notes:
        log.warning(note)
    log.info("data: %s", splits.describe())
    width, height = config.image_size, config.image_size
    if config.aspect == "auto":
        goods = [s for s in splits.train if not s.is_defect]
        width, height = input_size(config.image_size, median_aspect(goods))
    spec = InputSpec(
        width=width,
        height=height,
        resize=config.resize,
        color=_color_mode(splits, config),  # type: ignore[arg-type]
    )
    if config.kind == "anomaly":
        train = load_images(
            [s for s in splits.train if not s.is_defect], spec, "reading train images"
        )
    else:
        train = load_images(splits.train, spec, "reading train images")
    val = load_images(splits.val, spec, "reading validation images")
    backbone = build_backbone(config.backbone)
    if config.layers:
        backbone.set_taps(config.layers)
    started = time.monotonic()
    history: History | None = None
    model: nn.Module
    if config.kind == "anomaly":
        fitted = fit_patchcore(
            backbone, train.pixels, config.patchcore, config.coreset, config.seed, config.batch_size
        )
        model = patchcore = fitted.model
        output_names = ["score", "anomaly_map"]
        labels = ["good", "defect"]
        what = f"PatchCore ({backbone.describe_taps()}; memory bank {patchcore.bank_size} patches)"
    else:
        if not any(s.is_defect for s in splits.train):
            raise DatasetError(
                f"{data}: no defect images to train a classifier on",
                hint="use --kind anomaly for good-only data",
            )
        model, history = train_classifier(
            backbone, train, val, splits.labels, config.classifier, config.seed
        )
        output_names = ["score", "anomaly_map", "probabilities"]
        labels = list(splits.labels)
        what = f"defect classifier over {labels} (best epoch {history.best_epoch})"
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / MODEL_FILE
    export_onnx(model, onnx_path, (spec.height, spec.width), output_names, config.opset)
    check_images = _parity_images(val, list(splits.test), spec)
    par = parity(model, onnx_path, check_images, output_names)
    check_parity(par, config.parity_tolerance, onnx_path)

    if config.kind == "anomaly" and len(val) == 0:
        # No held-out goods: every training image, scored against the bank without its own
        # patches (the graph's math in PyTorch; parity above shows ONNX agrees).
        good_scores, good_maps = leave_one_out(fitted, train.pixels)
        threshold = calibrate(
            good_scores,
            target_frr=config.target_frr,
            data=f"leave-one-image-out scores of the {len(train)} training goods of "
            f"{splits.root} (each scored against the memory bank without its own patches)",
        )
    else:
        # Validation images scored by the exported graph, as the server will score them.
        outputs = _onnx_outputs(onnx_path, spec, val.pixels, output_names)
        good = ~val.is_defect
        good_scores, good_maps = outputs["score"][good], outputs["anomaly_map"][good]
        threshold = calibrate(
            good_scores,
            outputs["score"][~good] if (~good).any() else None,
            target_frr=config.target_frr,
            target_escape=config.target_escape,
            data=f"validation split of {splits.root} ({good.sum()} good, {(~good).sum()} defect)",
        )
    train_seconds = time.monotonic() - started
    if config.kind == "anomaly":
        heat = heatmap_scale(good_maps, threshold.value)
    else:
        heat = HeatmapSpec(vmin=0.0, vmax=1.0)  # the class activation map is P(defect)-scaled
    params = config.to_params()
    params["taps"] = list(backbone.taps)
    metrics: dict[str, float | int | str | None] = {
        "train_seconds": round(train_seconds, 1),
        "n_train_images": len(train),
        "n_val_images": len(val),
        "skipped_images": len(train.skipped) + len(val.skipped),
        "parity_map_max_abs_diff": par.max_abs_diff_map,
    }
    if history is not None:
        metrics["best_epoch"] = history.best_epoch
        metrics["epochs_run"] = len(history.epochs)
        metrics["stopped"] = history.stopped
    card = ModelCard(
        name=name,
        version=version,
        kind=config.kind,
        description=f"{what}, trained on {splits.describe()}",
        input=spec,
        labels=labels,
        threshold=threshold,
        heatmap=heat,
        metrics=metrics,
        training=Provenance(
            data=str(Path(data).resolve()),
            backbone=config.backbone,
            weights=backbone.weights.name,
            weights_sha256=backbone.weights.sha256(),
            params=params,
            seed=config.seed,
            code_revision=code_revision(),
            created_at=utcnow(),
        ),
        export=ExportInfo(
            opset=config.opset,
            parity_max_abs_diff=par.max_abs_diff_score,
            parity_images=par.n_images,
        ),
        onnx_sha256=sha256_file(onnx_path),
    )
    write_card_file(card, out / CARD_FILE)
    write_split(out / REPORT_DIR / SPLIT_FILE, splits)
    load_model(out)  # the server's own checks: card, checksum, I/O contract, a real run
    return _Trained(model, card, splits, train_seconds)


def evaluate_test(out: Path, splits: Splits) -> dict[str, Any]:
    """Run the package on the test split through inspector.core (as `inspector evaluate`
    does, one frame at a time) and write report/ plots."""
    from inspector.evaluation import evaluate
    from inspector.report import write_report

    detector = Detector.load(out, RuntimeOptions(warmup_runs=2))
    samples = list(splits.test)
    result = evaluate(detector, samples, batch=1)
    write_report(detector, result, detector.package.report_dir)
    return dict(result.metrics)
