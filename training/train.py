"""From a data set folder to a verified model package: fit, export, calibrate, evaluate.

splits -> images (decoded and resized exactly as the server does) -> fit (PatchCore or
classifier) -> ONNX export + checker + parity -> threshold from validation scores run
through ONNX Runtime -> card.json -> load through inspector.core -> evaluation on test ->
metrics into the card, plots into report/.
"""

from __future__ import annotations

import logging
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspector.core.card import (
    NAME_PATTERN,
    ExportInfo,
    HeatmapSpec,
    InputSpec,
    ModelCard,
    Provenance,
    utcnow,
)
from inspector.core.card import write_card as write_card_file
from inspector.core.errors import DatasetError
from inspector.core.package import CARD_FILE, MODEL_FILE, load_model, sha256_file
from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions, load_onnx
from training.anomaly import fit_patchcore
from training.backbones import build_backbone
from training.calibrate import calibrate, heatmap_scale
from training.classifier_train import History, train_classifier
from training.config import TrainConfig
from training.datasets import Sample, Splits, load_splits
from training.export import check_parity, export_onnx, parity
from training.images import LoadedImages, load_images

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


def _name_version(out: Path) -> tuple[str, str]:
    import re

    clean = [
        re.sub(r"[^A-Za-z0-9_.-]", "-", part).lstrip("._-") or "model" for part in out.parts[-2:]
    ]
    name, version = ([*clean, "1"])[:2] if len(clean) == 1 else clean
    for value in (name, version):
        if not re.match(NAME_PATTERN, value):
            raise ValueError(f"{out}: cannot make a package name/version from {value!r}")
    return name, version


def _code_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return rev.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


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
    """Real images the model has not memorised: validation first, then test."""
    images = val.pixels[:n]
    if len(images) < n and test:
        extra = load_images(test[: n - len(images)], spec, "reading parity images").pixels
        images = np.concatenate([images, extra])
    return images


def run_training(data: Path | str, out: Path | str, config: TrainConfig) -> TrainResult:
    """Train a package into `out` (models/<name>/<version>) and evaluate it on the test split."""
    out = Path(out)
    if (out / MODEL_FILE).exists() or (out / CARD_FILE).exists():
        raise FileExistsError(f"{out} already holds a model package; choose a new version folder")
    name, version = _name_version(out)
    seed_everything(config.seed)
    splits = load_splits(data, **config.split_kwargs())
    for note in splits.notes:
        log.warning(note)
    log.info("data: %s", splits.describe())
    spec = InputSpec(
        width=config.width,
        height=config.height,
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
        patchcore = fit_patchcore(
            backbone, train.pixels, config.patchcore, config.coreset, config.seed, config.batch_size
        )
        model = patchcore
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
    train_seconds = time.monotonic() - started
    check_images = _parity_images(val, list(splits.test), spec)
    par = parity(model, onnx_path, check_images, output_names)
    check_parity(par, config.parity_tolerance, onnx_path)

    # Threshold and heatmap scale from validation, scored by the exported graph.
    outputs = _onnx_outputs(onnx_path, spec, val.pixels, output_names)
    good = ~val.is_defect
    threshold = calibrate(
        outputs["score"][good],
        outputs["score"][~good] if (~good).any() else None,
        target_frr=config.target_frr,
        target_escape=config.target_escape,
        data=f"validation split of {splits.root} ({good.sum()} good, {(~good).sum()} defect)",
    )
    if config.kind == "anomaly":
        heat = heatmap_scale(outputs["anomaly_map"][good], threshold.value)
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
            code_revision=_code_revision(),
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
    load_model(out)  # the server's own checks: card, checksum, I/O contract, a real run

    evaluation = None
    if splits.test:
        evaluation = evaluate_test(out, splits)
        metrics.update({k: v for k, v in evaluation.items() if not isinstance(v, dict)})
        metrics["test_split"] = splits.describe()
        card = card.model_copy(update={"metrics": metrics})
        write_card_file(card, out / CARD_FILE)
    return TrainResult(out, model, card, evaluation, train_seconds)


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
