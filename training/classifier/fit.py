"""Fine-tuning the defect classifier: class-balanced sampling, augmentation, early stopping.

It stops on epochs and patience, never on the clock unless a time budget is set, so the same
seed gives the same model on a busy or an idle machine. Batch-norm statistics stay frozen
(ImageNet's) and the first stages are not trained: small
batches on a CPU make running statistics noisy, and the early filters (edges, blobs) transfer
as they are. Early stopping watches the validation loss and restores the best epoch.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inspector.core.errors import DatasetError
from inspector.core.metrics import auroc as roc_auc
from inspector.progress import task
from training.backbones import Backbone
from training.classifier.model import DefectClassifier
from training.config import ClassifierConfig, TrainConfig
from training.fitting import (
    Calibration,
    FitStep,
    Fitted,
    ScoreFn,
    TrainData,
    all_samples,
    validation_scores,
)
from training.images import LoadedImages

log = logging.getLogger(__name__)


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped: str = ""
    #: True when the wall clock, not the epochs or patience, ended the run.
    by_time_budget: bool = False


def label_indices(images: LoadedImages, labels: tuple[str, ...]) -> np.ndarray:
    return np.array([labels.index(s.label) for s in images.samples], dtype=np.int64)


def augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips (and 90-degree turns when square), mild brightness/contrast jitter; uint8 -> float."""
    x = batch.to(torch.float32)
    n = x.shape[0]
    flips_h = torch.rand(n, generator=gen) < 0.5
    flips_v = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flips_h.view(-1, 1, 1, 1), x.flip(2), x)
    x = torch.where(flips_v.view(-1, 1, 1, 1), x.flip(1), x)
    if x.shape[1] == x.shape[2]:
        turn = torch.rand(n, generator=gen) < 0.5
        x = torch.where(turn.view(-1, 1, 1, 1), x.transpose(1, 2), x)
    gain = 1.0 + 0.2 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    bias = 20.0 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * gain + mean + bias).clamp(0.0, 255.0)


def _freeze(backbone: Backbone, frozen_stride: int) -> None:
    for stride, stage in zip(backbone.strides, backbone.stages, strict=True):
        for p in stage.parameters():
            p.requires_grad_(stride > frozen_stride)


def _bn_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


@torch.no_grad()
def _evaluate(
    model: DefectClassifier, images: LoadedImages, y: np.ndarray, batch_size: int
) -> tuple[float, float | None]:
    model.eval()
    losses, scores = [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images.pixels[start : start + batch_size])
        logits, _ = model.logits_and_features(x)
        target = torch.from_numpy(y[start : start + batch_size])
        losses.append(F.cross_entropy(logits, target, reduction="sum").item())
        scores.append(1.0 - logits.softmax(1)[:, 0].numpy())
    loss = sum(losses) / max(1, len(images))
    return loss, roc_auc(y > 0, np.concatenate(scores)) if scores else None


def train_classifier(
    backbone: Backbone,
    train: LoadedImages,
    val: LoadedImages,
    labels: tuple[str, ...],
    config: ClassifierConfig,
    seed: int = 0,
    batch_size: int = 16,
) -> tuple[DefectClassifier, History]:
    """Fine-tune a classifier over `labels` (good first) and return the best epoch's model."""
    y_train, y_val = label_indices(train, labels), label_indices(val, labels)
    counts = np.bincount(y_train, minlength=len(labels))
    if (counts == 0).any():
        missing = [labels[i] for i in np.flatnonzero(counts == 0)]
        raise DatasetError(
            f"no training images for class(es) {missing}",
            hint="every class needs images in the training split; add images or drop the folder",
        )
    if len(val) == 0:
        raise DatasetError("the classifier needs validation images for early stopping")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    h, w = train.pixels.shape[1:3]
    model = DefectClassifier(backbone, len(labels), (h, w), config.dropout)
    _freeze(backbone, config.frozen_stride)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = config.samples_per_epoch or len(train)
    steps = max(1, per_epoch // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=steps * config.max_epochs, pct_start=0.15
    )
    # Class-balanced sampling: every class is drawn equally often.
    weights = torch.from_numpy(1.0 / counts[y_train]).to(torch.float64)
    history = History()
    best_loss, best_state = float("inf"), copy.deepcopy(model.state_dict())
    started = time.monotonic()
    bad_epochs = 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        _bn_eval(model)
        draw = torch.multinomial(
            weights, steps * batch_size, replacement=True, generator=gen
        )
        total = 0.0
        with task(f"epoch {epoch}/{config.max_epochs}", steps) as bar:
            for step in range(steps):
                idx = draw[step * batch_size : (step + 1) * batch_size].numpy()
                x = torch.from_numpy(train.pixels[idx])
                x = augment(x, gen) if config.augment else x.to(torch.float32)
                logits, _ = model.logits_and_features(x)
                loss = F.cross_entropy(logits, torch.from_numpy(y_train[idx]), label_smoothing=0.05)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                scheduler.step()
                total += loss.item()
                bar.advance()
        val_loss, val_auroc = _evaluate(model, val, y_val, batch_size)
        record = {"epoch": epoch, "train_loss": total / steps, "val_loss": val_loss}
        if val_auroc is not None:
            record["val_auroc"] = val_auroc
        history.epochs.append(record)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in record.items()})
        if val_loss < best_loss - 1e-4:
            best_loss, best_state, bad_epochs = val_loss, copy.deepcopy(model.state_dict()), 0
            history.best_epoch = epoch
        else:
            bad_epochs += 1
        if bad_epochs >= config.patience:
            history.stopped = f"early stop: no better validation loss for {bad_epochs} epochs"
            break
        budget = config.max_minutes
        if budget is not None and time.monotonic() - started > 60.0 * budget:
            history.stopped = f"time budget of {budget:g} min reached"
            history.by_time_budget = True
            break
    else:
        history.stopped = "max epochs reached"
    model.load_state_dict(best_state)
    return model.eval(), history


def fit(backbone: Backbone, data: TrainData, config: TrainConfig) -> Fitted:
    """The classifier's fit step: fine-tune on goods and defects, early-stop on validation."""
    splits = data.splits
    if not any(s.is_defect for s in splits.train):
        raise DatasetError(
            f"{splits.root}: no defect images to train a classifier on",
            hint="use --kind anomaly for good-only data",
        )
    model, history = train_classifier(
        backbone, data.train, data.val, splits.labels, config.classifier, config.seed,
        config.batch_size,
    )
    metrics: dict[str, float | int | str | None] = {
        "best_epoch": history.best_epoch,
        "epochs_run": len(history.epochs),
        "stopped": history.stopped,
    }
    warnings: tuple[str, ...] = ()
    if history.by_time_budget:
        metrics["time_budget_min"] = config.classifier.max_minutes
        warnings = (
            f"the classifier stopped on its time budget ({config.classifier.max_minutes:g} min, "
            f"--set max_minutes) after {len(history.epochs)} of "
            f"{config.classifier.max_epochs} epochs: the same seed may give another model on "
            "a machine with another load",
        )

    def calibration(score: ScoreFn) -> Calibration:
        # The class activation map is already P(defect)-scaled: no maps needed.
        return validation_scores(score, data.val, splits)

    labels = list(splits.labels)
    return Fitted(
        model=model,
        labels=labels,
        what=f"defect classifier over {labels} (best epoch {history.best_epoch})",
        calibration=calibration,
        metrics=metrics,
        warnings=warnings,
    )


STEP = FitStep(samples=all_samples, fit=fit)
