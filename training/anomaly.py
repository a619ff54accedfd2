"""Fitting PatchCore on good images: patch features -> greedy coreset -> memory bank."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from training.backbones import Backbone
from training.coreset import greedy_coreset
from training.patchcore import PatchCore, PatchCoreConfig, PatchFeatures
from training.progress import batches, task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoresetConfig:
    """Memory-bank size: `fraction` of all training patches, capped at `max_size`.

    The cap bounds inference cost (one [patches x bank] matrix product per image) whatever the
    number of training images.
    """

    fraction: float = 0.01
    max_size: int = 8000
    min_size: int = 256
    proj_dim: int = 64
    max_candidates: int = 200_000


@torch.no_grad()
def extract_patches(
    features: PatchFeatures, images: np.ndarray, batch_size: int = 16, description: str = ""
) -> torch.Tensor:
    """Patch features of uint8 NHWC images, as rows: [N * h * w, C]."""
    rows = []
    with task(description or "extracting patch features", len(images)) as bar:
        for part in batches(len(images), batch_size):
            fmap = features(torch.from_numpy(images[part]))
            rows.append(fmap.permute(0, 2, 3, 1).reshape(-1, fmap.shape[1]))
            bar.advance(part.stop - part.start)
    return torch.cat(rows)


def bank_size(n_patches: int, cfg: CoresetConfig) -> int:
    size = round(cfg.fraction * n_patches)
    return int(min(n_patches, max(cfg.min_size, min(cfg.max_size, size))))


def fit_patchcore(
    backbone: Backbone,
    good_images: np.ndarray,
    config: PatchCoreConfig,
    coreset: CoresetConfig,
    seed: int = 0,
    batch_size: int = 16,
) -> PatchCore:
    """Build a PatchCore model whose memory bank is a coreset of the good images' patches."""
    if len(good_images) == 0:
        raise ValueError("PatchCore needs at least one good image to fit")
    features = PatchFeatures(backbone, pool=config.pool).eval()
    patches = extract_patches(features, good_images, batch_size, "features of good images")
    n = bank_size(len(patches), coreset)
    log.info("memory bank: %d of %d patches (%s)", n, len(patches), backbone.describe_taps())
    index = greedy_coreset(
        patches.numpy(),
        n,
        seed=seed,
        proj_dim=coreset.proj_dim,
        max_candidates=coreset.max_candidates,
    )
    bank = patches[torch.from_numpy(index)].clone()
    h, w = good_images.shape[1:3]
    return PatchCore(features, bank, (h, w), config).eval()
