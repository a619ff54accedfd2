"""From a data set folder to a verified model package: read, fit, export, calibrate, evaluate.

The run reads top to bottom, the same for every model kind; what differs per kind is its
fit step (`training/patchcore/fit.py`, `training/classifier/fit.py`). Every phase is timed on
the wall clock, and the times go into the printed summary and the card.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from inspector.core.card import (
    ExportInfo,
    InputSpec,
    ModelCard,
    ModelKind,
    Provenance,
    TilingSpec,
    utcnow,
)
from inspector.core.card import write_card as write_card_file
from inspector.core.datasets import SPLIT_FILE
from inspector.core.operating import card_metrics
from inspector.core.package import (
    CARD_FILE,
    MODEL_FILE,
    OUTPUT_NAMES,
    REPORT_DIR,
    load_model,
    sha256_file,
)
from inspector.core.pipeline import Detector
from inspector.core.runtime import RuntimeOptions, load_onnx
from inspector.core.threshold import choose_threshold
from training.backbones import build_backbone
from training.classifier import fit as classifier_fit
from training.config import AUTO_DENSITY, AUTO_PCA, TrainConfig
from training.datasets import Sample, Splits, has_labelled_defects, load_splits
from training.errors import TrainingError
from training.export import check_parity, export_onnx, parity
from training.fitting import FitStep, TrainData
from training.hybrid import fit as hybrid_fit
from training.images import LoadedImages, input_size, load_images, median_aspect, median_size
from training.patchcore import fit as patchcore_fit
from training.provenance import code_revision, package_name_version, write_split

log = logging.getLogger(__name__)

FIT_STEPS: dict[str, FitStep] = {
    "anomaly": patchcore_fit.STEP,
    "classifier": classifier_fit.STEP,
    "hybrid": hybrid_fit.STEP,
}


class Timings:
    """Wall-clock seconds per phase: `with timings("fit"): ...`."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.monotonic() - start

    def as_dict(self) -> dict[str, float]:
        """Phases and the total (which includes what no phase covers), to the millisecond
        (the summary prints tenths)."""
        out = {k: round(v, 3) for k, v in self.phases.items()}
        out["total"] = round(time.monotonic() - self.started, 3)
        return out


@dataclass(frozen=True)
class TrainResult:
    out: Path
    #: The PyTorch model that was exported (for parity checks and notebooks).
    model: nn.Module
    card: ModelCard
    #: `inspector evaluate --json` figures on the test split (None without test images).
    evaluation: dict[str, Any] | None
    #: Wall-clock seconds per phase (read, fit, export, parity, calibrate, package,
    #: evaluate) and the total.
    timings: dict[str, float]
    #: Things the user must not miss (e.g. a time budget ended the run).
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> list[str]:
        """What `inspector train` prints."""
        card, t = self.card, self.timings
        phases = ", ".join(f"{k} {v:.1f}" for k, v in t.items() if k != "total")
        lines = [
            f"wrote {self.out} ({card.ref}, {card.kind}) in {t['total']:.1f} s wall clock; "
            f"threshold {card.threshold.value:.6g} ({card.threshold.method})",
            f"{'seconds':>20}: {phases}",
        ]
        lines += [f"WARNING: {w}" for w in self.warnings]
        for key in ("image_auroc", "pixel_auroc", "f1", "false_reject_rate", "escape_rate",
                    "ms_per_image"):
            value = (self.evaluation or {}).get(key)
            if value is not None:
                lines.append(f"{key:>20}: {value:.4f}")
        return lines


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_kind(config: TrainConfig, data: Path | str) -> TrainConfig:
    """kind=auto: hybrid when labelled defects are there to train on: a `labelled` folder,
    or defect folders in the data with at least `min_per_type` of each type in the training
    split (its cross-validated threshold needs them); else anomaly; always anomaly when
    tiled. Then the kind's defaults that depend on it (`pca=-1`: AUTO_PCA, `density=-1`:
    AUTO_DENSITY)."""
    config = _resolve_kind(config, data)
    pc = config.patchcore
    if pc.pca < 0:
        pc = replace(pc, pca=AUTO_PCA.get(config.kind, 0))
    if pc.density < 0:
        pc = replace(pc, density=AUTO_DENSITY.get(config.kind, 0))
    return replace(config, patchcore=pc)


def _resolve_kind(config: TrainConfig, data: Path | str) -> TrainConfig:
    if config.kind != "auto":
        return config
    labelled = has_labelled_defects(data, config.labelled)
    if config.tile:  # tiled models are anomaly models: labelled defects are left unused
        if labelled:
            log.warning("kind: anomaly (tiled); the labelled defects are not trained on: "
                        "hybrid models are not tiled")
        return replace(config, kind="anomaly")
    if not labelled:
        log.info("kind: anomaly (no labelled defects)")
        return replace(config, kind="anomaly")
    hybrid = replace(config, kind="hybrid")
    if config.labelled is not None:  # asked for by name: its problems are reported, not skipped
        return hybrid
    splits = load_splits(data, **hybrid.split_kwargs())  # file names only: cheap
    per_type = Counter(s.label for s in splits.train if s.is_defect)
    few = {t: n for t, n in sorted(per_type.items()) if n < config.hybrid.min_per_type}
    if few or not per_type:
        shown = ", ".join(f"{t}: {n}" for t, n in few.items()) or "none"
        log.warning("kind: anomaly; too few labelled defects for a hybrid (%s in the training "
                    "split; it needs %d of each type): pass --kind hybrid to be told exactly "
                    "what is missing", shown, config.hybrid.min_per_type)
        return replace(config, kind="anomaly")
    log.info("kind: hybrid (labelled defects: %s)",
             ", ".join(f"{t} {n}" for t, n in sorted(per_type.items())))
    return hybrid


def run_training(data: Path | str, out: Path | str, config: TrainConfig) -> TrainResult:
    """Train a package into `out` (models/<name>/<version>) and evaluate it on the test split."""
    timings = Timings()
    config = resolve_kind(config, data)
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
        model, card, splits, warnings = _train_into(stage, data, config, name, version, timings)
        if out.exists():
            out.rmdir()
        stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    evaluation = None
    metrics = dict(card.metrics)
    if splits.test:
        with timings("evaluate"):
            evaluation = evaluate_test(out, splits)
        metrics.update({k: v for k, v in evaluation.items() if not isinstance(v, dict)})
        metrics.update(card_metrics(evaluation["operating_points"]))
        metrics["test_split"] = splits.describe()
    seconds = timings.as_dict()
    # The card's final word: the evaluation and the timings of the whole run.
    params = {**card.training.params, "timings_s": seconds}
    card = card.model_copy(
        update={"metrics": metrics, "training": card.training.model_copy(update={"params": params})}
    )
    write_card_file(card, out / CARD_FILE)
    return TrainResult(out, model, card, evaluation, seconds, warnings)


def _train_into(
    out: Path, data: Path | str, config: TrainConfig, name: str, version: str, timings: Timings
) -> tuple[nn.Module, ModelCard, Splits, tuple[str, ...]]:
    """Fit, export, check parity, calibrate and write the card into `out`."""
    seed_everything(config.seed)
    step = FIT_STEPS[config.kind]
    with timings("read"):
        splits = load_splits(data, **config.split_kwargs())
        for note in splits.notes:
            log.warning(note)
        log.info("data: %s", splits.describe())
        spec, tiling = _input_spec(splits, config), _tiling(splits, config)
        train = load_images(step.samples(splits), spec, "reading train images", tiling)
        val = load_images(splits.val, spec, "reading validation images", tiling)
    backbone = build_backbone(config.backbone)
    if config.layers:
        backbone.set_taps(config.layers)

    with timings("fit"):
        fitted = step.fit(backbone, TrainData(splits, spec, train, val), config)

    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / MODEL_FILE
    names = OUTPUT_NAMES[config.kind]
    with timings("export"):
        export_onnx(fitted.model, onnx_path, (spec.height, spec.width), names, config.opset)
    with timings("parity"):
        checked = _parity_images(val, list(splits.test), spec, tiling)
        par = parity(fitted.model, onnx_path, checked, names)
        check_parity(par, config.parity_tolerance, onnx_path)

    with timings("calibrate"):
        runtime = load_onnx(onnx_path, (spec.height, spec.width),
                            RuntimeOptions(providers="cpu"), list(names))
        cal = fitted.calibration(runtime.run)
        threshold = choose_threshold(
            cal.good, cal.defect, target_frr=config.target_frr,
            target_escape=config.resolved_target_escape, max_frr=config.max_frr, data=cal.data,
        ).model_copy(update={"n_defect_per_type": cal.defect_per_type})

    with timings("package"):
        params = config.to_params()
        params["taps"] = list(backbone.taps)
        metrics: dict[str, float | int | str | None] = {
            "n_train_images": len(train),
            "n_val_images": len(val),
            "skipped_images": len(train.skipped) + len(val.skipped),
            "parity_map_max_abs_diff": par.max_abs_diff_map,
            **fitted.metrics,
        }
        if tiling is not None:
            metrics["n_train_tiles"] = len(train.pixels)
        warned = "".join(f" WARNING: {w}." for w in fitted.warnings)
        card = ModelCard(
            name=name,
            version=version,
            kind=cast(ModelKind, config.kind),  # resolved: never "auto" here
            description=f"{fitted.what}, trained on {splits.describe()}.{warned}",
            input=spec,
            labels=fitted.labels,
            threshold=threshold,
            heatmap=cal.heatmap(threshold.value),
            tiling=tiling,
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
    return fitted.model, card, splits, fitted.warnings


def _input_spec(splits: Splits, config: TrainConfig) -> InputSpec:
    """The model input: size (oblong for wide fixed-camera frames), resize mode, colour."""
    width, height = config.image_size, config.image_size
    if config.aspect == "auto" and not config.tile:  # tiles are square
        goods = [s for s in splits.train if not s.is_defect]
        width, height = input_size(config.image_size, median_aspect(goods))
    color = config.color
    if color == "auto":  # gray when the training images are (all channels equal)
        probe = InputSpec(width=64, height=64, resize="stretch", color="rgb")
        sample = load_images(splits.train[:16], probe, "checking colour").pixels.astype(np.int16)
        gray = np.all(sample[..., 0] == sample[..., 1]) and np.all(sample[..., 1] == sample[..., 2])
        color = "gray" if gray else "rgb"
    return InputSpec(width=width, height=height, resize=config.resize, color=color)


def _tiling(splits: Splits, config: TrainConfig) -> TilingSpec | None:
    """The card's tiling section (`--set tile=...`), with the training frames' median size."""
    if not config.tile:
        return None
    size = median_size([s for s in splits.train if not s.is_defect])
    return TilingSpec(
        tile_width=config.tile, tile_height=config.tile, overlap=config.tile_overlap,
        frame_width=size[0] if size else None, frame_height=size[1] if size else None,
    )


def _parity_images(
    val: LoadedImages, test: list[Sample], spec: InputSpec, tiling: TilingSpec | None, n: int = 8
) -> np.ndarray:
    """Real model inputs the model has not memorised (images, or tiles), spread over the split
    so that goods and each defect type show up: validation first, then test."""

    def spread(count: int, k: int) -> list[int]:
        return sorted({int(i) for i in np.linspace(0, count - 1, num=min(k, count))})

    images = val.pixels[spread(len(val.pixels), n)] if len(val.pixels) else val.pixels
    if len(images) < n and test:
        picked = [test[i] for i in spread(len(test), n - len(images))]
        extra = load_images(picked, spec, "reading parity images", tiling).pixels
        images = np.concatenate([images, extra[spread(len(extra), n - len(images))]])
    return images


def evaluate_test(out: Path, splits: Splits) -> dict[str, Any]:
    """Run the package on the test split through inspector.core (as `inspector evaluate`
    does, one frame at a time) and write report/ plots."""
    from inspector.evaluation import evaluate
    from inspector.report import write_report

    detector = Detector.load(out, RuntimeOptions(warmup_runs=2))
    result = evaluate(detector, list(splits.test), batch=1)
    write_report(detector, result, detector.package.report_dir)
    return dict(result.metrics)
