"""Fitting PatchCore on good images: patch features -> greedy coreset -> memory bank, and
the anomaly model's fit step (`STEP`) for `training.train`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from inspector.progress import batches, task
from training.backbones import Backbone
from training.config import CoresetConfig, PatchCoreConfig, TrainConfig
from training.datasets import Sample, Splits
from training.fitting import Calibration, FitStep, Fitted, ScoreFn, TrainData, validation_scores
from training.patchcore.coreset import greedy_coreset
from training.patchcore.model import PatchCore, PatchFeatures, bank_neighbours, spacing_of

log = logging.getLogger(__name__)


@torch.no_grad()
def extract_patches(
    features: PatchFeatures, images: np.ndarray, batch_size: int = 16, description: str = ""
) -> torch.Tensor:
    """Patch features of uint8 NHWC images, channels last: [N, h, w, C]."""
    maps = []
    with task(description or "extracting patch features", len(images)) as bar:
        for part in batches(len(images), batch_size):
            maps.append(features(torch.from_numpy(images[part])).permute(0, 2, 3, 1))
            bar.advance(part.stop - part.start)
    return torch.cat(maps)


#: Patches a principal-axes fit looks at, at most (a random sample beyond that: the axes of
#: a few hundred thousand patches are those of all of them, and the sum stays quick).
PCA_SAMPLE = 200_000


def principal_axes(patches: torch.Tensor, keep: int, seed: int = 0) -> torch.Tensor | None:
    """[C, keep]: the first `keep` principal axes of patch features [P, C] (float64 sums);
    None when `keep` is 0 or not below C (nothing to drop)."""
    c = patches.shape[1]
    if keep <= 0 or keep >= c:
        return None
    if len(patches) > PCA_SAMPLE:
        rows = np.random.default_rng(seed).choice(len(patches), PCA_SAMPLE, replace=False)
        patches = patches[torch.from_numpy(np.sort(rows))]
    x = patches.to(torch.float64)
    x = x - x.mean(dim=0)
    values, vectors = torch.linalg.eigh(x.T @ x)
    order = values.argsort(descending=True)[:keep]
    kept = float(values[order].sum() / values.sum())
    log.info("patch features: %d of %d principal axes keep %.1f%% of the variance", keep, c,
             100 * kept)
    return vectors[:, order].to(torch.float32).contiguous()


def bank_size(n_patches: int, cfg: CoresetConfig) -> int:
    size = round(cfg.fraction * n_patches)
    return int(min(n_patches, max(cfg.min_size, min(cfg.max_size, size))))


#: Neighbours kept per bank entry beyond `density`, so that hiding one image's entries still
#: leaves `density` of them for its recomputed spacing (an image holds ~10% of its patches in
#: the bank, and they cluster).
SPARE_NEIGHBOURS = 32


@dataclass(frozen=True)
class FittedPatchCore:
    """The model, and for every memory-bank entry the training row (image, or tile) it came
    from; for a density-aware bank, each entry's nearest other entries (distances [M, K],
    nearest first, and their bank indices [M, K])."""

    model: PatchCore
    bank_source: torch.Tensor
    neighbours: tuple[torch.Tensor, torch.Tensor] | None = None

    def hide(self, ids: torch.Tensor, bank_owner: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """For leave-one-out search of rows owned by `ids` [B] (`bank_owner` [M]: the owner of
        each bank entry): (the bank entries to exclude [B, M], the reweighting of a
        density-aware bank [B, M] or None). Without the reweighting an entry next to the
        hidden image's entries would keep the small spacing they gave it, and the hidden image
        would score higher than a new good part does."""
        exclude = bank_owner.view(1, -1) == ids.view(-1, 1)
        if self.neighbours is None:
            return exclude, None
        dist, index = self.neighbours
        k = self.model.config.density
        keep = bank_owner[index].unsqueeze(0) != ids.view(-1, 1, 1)  # [B, M, K]
        use = keep & (keep.cumsum(dim=2) <= k)
        n = use.sum(dim=2)
        full = spacing_of(dist, k)
        hidden = (dist.unsqueeze(0) * use).sum(dim=2) / n.clamp_min(1)
        hidden = torch.where(n > 0, hidden.clamp_min(1e-6), full)
        return exclude, (full / hidden) ** 2


def fit_patchcore(
    backbone: Backbone,
    good_images: np.ndarray,
    config: PatchCoreConfig,
    coreset: CoresetConfig,
    seed: int = 0,
    batch_size: int = 16,
) -> FittedPatchCore:
    """Build a PatchCore model whose memory bank is a coreset of the good images' patches."""
    if len(good_images) == 0:
        raise ValueError("PatchCore needs at least one good image to fit")
    features = PatchFeatures(backbone, pool=config.pool).eval()
    maps = extract_patches(features, good_images, batch_size, "features of good images")
    return bank_from_patches(features, maps, good_images.shape[1:3], config, coreset, seed)


def bank_from_patches(
    features: PatchFeatures,
    maps: torch.Tensor,
    input_hw: tuple[int, int],
    config: PatchCoreConfig,
    coreset: CoresetConfig,
    seed: int = 0,
) -> FittedPatchCore:
    """The PatchCore model from the good images' patch features [N, h, w, C]."""
    patches = maps.reshape(-1, maps.shape[-1])
    projection = principal_axes(patches, config.pca, seed)
    if projection is not None:  # the bank, its coreset and the search in the kept axes
        patches = patches @ projection
    n = bank_size(len(patches), coreset)
    taps = features.backbone.describe_taps()
    log.info("memory bank: %d of %d patches (%s)", n, len(patches), taps)
    index = greedy_coreset(
        patches.numpy(),
        n,
        seed=seed,
        proj_dim=coreset.proj_dim,
        max_candidates=coreset.max_candidates,
    )
    chosen = torch.from_numpy(index)
    bank = patches[chosen].clone()
    spacing, neighbours = None, None
    if config.density > 0:
        neighbours = bank_neighbours(bank, config.density + SPARE_NEIGHBOURS)
        spacing = spacing_of(neighbours[0], config.density)
        log.info("density-aware search: bank spacing to %d neighbours, median %.3g",
                 config.density, float(spacing.median()))
    per_image = maps.shape[1] * maps.shape[2]
    h, w = input_hw
    model = PatchCore(features, bank, (h, w), config, projection, spacing).eval()
    return FittedPatchCore(model, chosen // per_image, neighbours)


@torch.no_grad()
def leave_one_out(
    fitted: FittedPatchCore, good_images: np.ndarray, batch_size: int = 8, map_stride: int = 4,
    owners: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the training images, each against the bank without its own patches.

    A training image's patches are in the bank, so its plain score is near zero; hiding them
    gives the score it would get as a new image of the same kind, which makes every training
    image usable for threshold calibration. For tiles, `owners` names each row's image: a tile
    is scored without the patches of every tile of its image (its overlapping neighbours hold
    the same pixels). Returns (scores [rows], maps subsampled by `map_stride` for the heatmap
    scale).
    """
    model = fitted.model
    image_of = torch.from_numpy(
        np.arange(len(good_images)) if owners is None else np.asarray(owners))
    bank_image = image_of[fitted.bank_source]
    scores, maps = [], []
    with task("leave-one-out scores", len(good_images)) as bar:
        for part in batches(len(good_images), batch_size):
            exclude, reweight = fitted.hide(image_of[part], bank_image)
            feats = model.features(torch.from_numpy(good_images[part]))
            d = model.distances(feats, exclude, reweight)
            score, amap = model.map_and_score(d)
            scores.append(score.numpy())
            maps.append(amap[:, ::map_stride, ::map_stride].numpy())
            bar.advance(part.stop - part.start)
    return np.concatenate(scores), np.concatenate(maps)


def _good_samples(splits: Splits) -> list[Sample]:
    return [s for s in splits.train if not s.is_defect]


def fit(backbone: Backbone, data: TrainData, config: TrainConfig) -> Fitted:
    """The anomaly model's fit step: a memory bank from the training goods."""
    fitted = fit_patchcore(
        backbone, data.train.pixels, config.patchcore, config.coreset, config.seed,
        config.batch_size,
    )

    def calibration(score: ScoreFn) -> Calibration:
        if len(data.val):
            return validation_scores(score, data.val, data.splits, maps=True)
        # No held-out goods: every training image, scored against the bank without its own
        # patches (the graph's math in PyTorch; the parity check shows ONNX agrees).
        rows, maps = leave_one_out(fitted, data.train.pixels, owners=data.train.owners)
        return Calibration(
            good=data.train.frame_scores(rows),
            defect=None,
            data=f"leave-one-image-out scores of the {len(data.train)} training goods of "
            f"{data.splits.root} (each scored against the memory bank without its own patches)",
            good_maps=maps,
        )

    model = fitted.model
    return Fitted(
        model=model,
        labels=["good", "defect"],
        what=f"PatchCore ({backbone.describe_taps()}; {_search(model)}memory bank "
             f"{model.bank_size} patches)",
        calibration=calibration,
        metrics={"bank_size": model.bank_size},
    )


def _search(model: PatchCore) -> str:
    p = model.projection
    axes = "" if p is None else f"{p.shape[1]} of {p.shape[0]} principal axes; "
    k = model.config.density
    return axes + (f"distances in units of the bank's spacing to {k} neighbours; " if k > 0
                   else "")


STEP = FitStep(samples=_good_samples, fit=fit)
