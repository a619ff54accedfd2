"""The hybrid's fit step: PatchCore's memory bank from the training goods, the head from the
goods and the labelled defects, and calibration scores that no fitted part has seen.

Calibration is out-of-fold: every training image is scored by a head fitted without its fold
(k-fold, stratified by class), and every good's PatchCore part is its leave-one-image-out
score (its own patches hidden from the bank). So the threshold is set on all the labelled
defects and all the goods without touching the validation or test splits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from inspector.core.errors import DatasetError
from inspector.core.metrics import auroc, threshold_for_frr
from inspector.progress import batches, task
from training.backbones import Backbone
from training.config import TrainConfig
from training.datasets import GOOD, Sample
from training.fitting import Calibration, FitStep, Fitted, ScoreFn, TrainData, all_samples
from training.hybrid.head import fit_head, out_of_fold, predict, stratified_folds
from training.hybrid.model import (
    DefectBank,
    HybridModel,
    combine,
    defect_log_odds,
    describe,
)
from training.patchcore.fit import FittedPatchCore, bank_from_patches, extract_patches
from training.patchcore.model import PatchCore, PatchFeatures


def check_labelled(
    listed: Sequence[Sample], read: Sequence[Sample], root: Path, minimum: int
) -> dict[str, int]:
    """Readable images per labelled type (`read`: what was left of `listed` after unreadable
    files were skipped); refuse a type with fewer than `minimum`, and data without any."""
    counts = Counter(s.label for s in read if s.is_defect)
    counts.update(dict.fromkeys({s.label for s in listed if s.is_defect}, 0))
    if not counts:
        raise DatasetError(
            f"{root}: no labelled defect images to train a hybrid model on",
            hint="put reviewed defects in train/<defect_type>/ (MVTec layout) or pass "
            "--labelled DIR with <defect_type>/ folders; or use --kind anomaly",
        )
    few = {t: n for t, n in sorted(counts.items()) if n < minimum}
    if few:
        shown = ", ".join(f"{t}: {n}" for t, n in few.items())
        raise DatasetError(
            f"too few readable labelled images per defect type ({shown}); the hybrid needs at "
            f"least {minimum} of each for its cross-validated threshold",
            hint="add images of those types or remove their folders",
        )
    return dict(sorted(counts.items()))


@torch.no_grad()
def _descriptors(
    model: PatchCore, feats: torch.Tensor, top: float, exclude: torch.Tensor | None,
    reweight: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """(descriptors, anomaly scores, maps subsampled 4x, patch distances) of one batch of
    patch features."""
    d = model.distances(feats, exclude, reweight)
    score, amap = model.map_and_score(d)
    return describe(feats, d, score, top).numpy(), score.numpy(), amap[:, ::4, ::4].numpy(), d


def describe_goods(
    fitted: FittedPatchCore, maps: torch.Tensor, top: float, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """The training goods' descriptors, scores, maps and patch distances [N, h, w], each with
    its own patches hidden from the bank (leave-one-image-out), from their features
    [N, h, w, C] already computed."""
    out = []
    with task("leave-one-out descriptors of goods", len(maps)) as bar:
        for part in batches(len(maps), batch_size):
            ids = torch.arange(part.start, part.stop)
            exclude, reweight = fitted.hide(ids, fitted.bank_source)
            feats = maps[part].permute(0, 3, 1, 2)
            out.append(_descriptors(fitted.model, feats, top, exclude, reweight))
            bar.advance(part.stop - part.start)
    desc, scores, amaps, d = zip(*out, strict=True)
    return np.concatenate(desc), np.concatenate(scores), np.concatenate(amaps), torch.cat(d)


def describe_images(
    model: PatchCore, images: np.ndarray, top: float, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
    """Descriptors, anomaly scores, patch features [N, C, h, w] and patch distances [N, h, w]
    of images that are not in the bank (the defects)."""
    desc, scores, feats_all, dists = [], [], [], []
    with torch.no_grad(), task("descriptors of labelled defects", len(images)) as bar:
        for part in batches(len(images), batch_size):
            feats = model.features(torch.from_numpy(images[part]))
            x, s, _, d = _descriptors(model, feats, top, None)
            desc.append(x)
            scores.append(s)
            feats_all.append(feats)
            dists.append(d)
            bar.advance(part.stop - part.start)
    return np.concatenate(desc), np.concatenate(scores), torch.cat(feats_all), torch.cat(dists)


def build_defect_bank(
    feats: torch.Tensor, d: torch.Tensor, types: np.ndarray, n_types: int, per_image: int,
    projection: torch.Tensor | None = None,
) -> tuple[DefectBank, np.ndarray]:
    """The defect bank of labelled images (features [R, C, h, w], good-bank distances
    [R, h, w], type 1..n_types each): the `per_image` patches of each farthest from the good
    bank, ordered by type, searched in PatchCore's principal axes (`projection`). Returns it
    and each entry's image (index into the R rows)."""
    r, c = feats.shape[:2]
    flat = feats.reshape(r, c, -1).transpose(1, 2)  # [R, P, C]
    k = min(per_image, flat.shape[1])
    idx = d.reshape(r, -1).topk(k, dim=1).indices
    picked = flat.gather(1, idx.unsqueeze(2).expand(r, k, c))  # [R, k, C]
    order = np.argsort(types, kind="stable")
    entries = picked[torch.from_numpy(order)].reshape(-1, c)
    counts = [int((types == t).sum()) * k for t in range(1, n_types + 1)]
    return DefectBank(entries, counts, projection).eval(), np.repeat(order, k)


@torch.no_grad()
def defect_bank_features(
    bank: DefectBank, source: np.ndarray, goods: tuple[torch.Tensor, torch.Tensor],
    defects: tuple[torch.Tensor, torch.Tensor], bank_rows: np.ndarray, batch_size: int = 16,
) -> np.ndarray:
    """The bank's features of every training image, goods (features [N, h, w, C] channels
    last, distances leave-one-out) then defects ([R, C, h, w]); a defect in the bank
    (`bank_rows[source]` names each entry's defect row) is scored without its own entries."""
    (good_maps, good_d), (defect_f, defect_d) = goods, defects
    owner = torch.from_numpy(bank_rows[source]).view(1, -1)
    out = []
    for part in batches(len(good_maps), batch_size):
        out.append(bank(good_maps[part].permute(0, 3, 1, 2), good_d[part]))
    for part in batches(len(defect_f), batch_size):
        rows = torch.arange(part.start, part.stop).view(-1, 1)
        out.append(bank(defect_f[part], defect_d[part], owner == rows))
    return torch.cat(out).numpy()


def anomaly_scale(good_scores: np.ndarray, target_frr: float) -> tuple[float, float]:
    """(centre, width) that put the anomaly score on the log-odds scale: 0 at the good-only
    threshold for `target_frr`, -log(99) at the median good."""
    centre = threshold_for_frr(good_scores, target_frr)
    spread = centre - float(np.median(good_scores))
    return centre, max(spread / np.log(99.0), 1e-6)


def fit(backbone: Backbone, data: TrainData, config: TrainConfig) -> Fitted:
    """Bank, head and out-of-fold calibration scores (see the module docstring)."""
    hc, train = config.hybrid, data.train
    per_type = check_labelled(data.splits.train, train.samples, data.splits.root, hc.min_per_type)
    labels = [GOOD, *per_type]
    good = ~train.is_defect
    features = PatchFeatures(backbone, pool=config.patchcore.pool).eval()
    maps = extract_patches(
        features, train.pixels[good], config.batch_size, "features of good images"
    )
    fitted = bank_from_patches(
        features, maps, train.pixels.shape[1:3], config.patchcore, config.coreset, config.seed
    )
    good_x, good_a, good_maps, good_d = describe_goods(fitted, maps, hc.top_patches)
    defect_x, defect_a, defect_f, defect_d = describe_images(fitted.model, train.pixels[~good],
                                                             hc.top_patches)
    x = base = np.concatenate([good_x, defect_x])
    y = np.array([labels.index(s.label) for s in train.samples if not s.is_defect]
                 + [labels.index(s.label) for s in train.samples if s.is_defect])
    folds = min(hc.folds, min(per_type.values()))
    bank = None
    if hc.defect_bank > 0:
        n_good = len(good_x)
        y_def = y[n_good:]
        fold = stratified_folds(y, folds, config.seed)

        def with_bank(rows: np.ndarray) -> tuple[DefectBank, np.ndarray]:
            """Bank of the defect rows `rows`, and every training image's input with it."""
            b, src = build_defect_bank(defect_f[rows], defect_d[rows], y_def[rows],
                                       len(per_type), hc.defect_bank,
                                       fitted.model.projection)
            e = defect_bank_features(b, src, (maps, good_d), (defect_f, defect_d), rows)
            return b, np.concatenate([base, e], axis=1)

        # Per fold the bank holds only that fold's training defects (a held-out defect never
        # meets its own prototypes); a defect in the bank is described without its own.
        oof = np.zeros((len(y), len(labels)), dtype=np.float32)
        with task("defect bank, out-of-fold heads", folds) as bar:
            for f in range(folds):
                held = fold == f
                _, xf = with_bank(np.flatnonzero(~held[n_good:]))
                part = fit_head(xf[~held], y[~held], len(labels), hc.l2, hc.max_iter)
                oof[held] = predict(part, xf[held])
                bar.advance(1)
        bank, x = with_bank(np.arange(len(y_def)))
    else:
        oof = out_of_fold(x, y, len(labels), folds=folds, l2=hc.l2, max_iter=hc.max_iter,
                          seed=config.seed)
    head = fit_head(x, y, len(labels), hc.l2, hc.max_iter)
    centre, width = anomaly_scale(good_a, config.target_frr)
    model = HybridModel(fitted.model, head, centre, width, hc.top_patches, bank).eval()
    anomaly = model.anomaly_log_odds(torch.from_numpy(np.r_[good_a, defect_a])).numpy()
    combined = combine(defect_log_odds(torch.from_numpy(oof)), torch.from_numpy(anomaly)).numpy()
    n_good = int(good.sum())
    types = ", ".join(f"{t} {n}" for t, n in per_type.items())
    calibration = Calibration(
        good=combined[:n_good],
        defect=combined[n_good:],
        data=f"{folds}-fold out-of-fold scores of the {n_good} training goods (PatchCore part "
        f"leave-one-image-out) and the {len(defect_a)} labelled defects ({types}) of "
        f"{data.splits.root}; no validation or test images",
        good_maps=good_maps,
        map_threshold=centre,
        defect_per_type=per_type,
    )

    def calibrate(_: ScoreFn) -> Calibration:
        return calibration

    pc = fitted.model
    return Fitted(
        model=model,
        labels=labels,
        what=f"hybrid: PatchCore ({backbone.describe_taps()}; memory bank {pc.bank_size} "
        f"patches) + a defect bank of {0 if bank is None else bank.size} prototypes "
        f"+ a logistic-regression head over {labels}; score = log-odds of a defect, the head's "
        f"and the anomaly score's odds added",
        calibration=calibrate,
        metrics={
            "bank_size": pc.bank_size,
            "cv_folds": folds,
            "n_labelled_defects": len(defect_a),
            "cv_image_auroc": auroc(y > 0, combined),
            "anomaly_centre": centre,
            "anomaly_width": width,
        },
    )


STEP = FitStep(samples=all_samples, fit=fit)
