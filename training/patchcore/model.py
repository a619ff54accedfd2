"""PatchCore (Roth et al., 2022) as a plain module: the whole inference path is one graph.

uint8 image [N, H, W, 3] -> normalise -> backbone taps -> 3x3 local average (each patch sees
its neighbourhood) -> taps resized to the finest tap's grid and concatenated -> projected
onto the training goods' first principal axes (`pca`) -> distance of
every patch to its nearest neighbour in the memory bank, in units of that entry's spacing to its
own neighbours (`density`; matrix-multiply form: (|q|^2 - 2 q.m + |m|^2) / s_m^2 from one
MatMul, then ReduceMin) -> map upsampled to
the input size and Gaussian smoothed -> image score from the map (the mean of its top fraction,
by default all of it: training/README.md, tail study).

Fitting (the memory bank) lives in `training.patchcore.fit`; this module only holds the math.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones import Backbone
from training.backbones.base import Normalise
from training.config import PatchCoreConfig


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class PatchFeatures(nn.Module):
    """uint8 NHWC images -> locally aware patch features [N, C, h, w] on the finest tap grid."""

    def __init__(self, backbone: Backbone, pool: int = 3) -> None:
        super().__init__()
        self.normalise = Normalise(backbone.weights.mean, backbone.weights.std)
        self.backbone = backbone
        self.pool = pool

    @property
    def channels(self) -> int:
        return sum(self.backbone.channels[t] for t in self.backbone.taps)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(self.normalise(image))
        size = maps[0].shape[-2:]
        out = []
        for fmap in maps:
            if self.pool > 1:
                fmap = F.avg_pool2d(fmap, self.pool, 1, self.pool // 2, count_include_pad=False)
            if fmap.shape[-2:] != size:
                fmap = F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)
            out.append(fmap)
        return torch.cat(out, dim=1)


def search_buffers(
    bank: torch.Tensor, spacing: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre [1, 1, d], bank matrix [d + 1, M], or [d + 2, M] with `spacing`) of a bank
    [M, d] for `search`.

    Distances are taken around the bank's mean: |q - m|^2 is the same, but the three terms of
    the expansion are smaller, so float32 cancellation noise is too. The matrix is the bank
    transposed and scaled by -2, with |m|^2 as the last row: a query with a 1 appended gives
    -2 q.m + |m|^2 in one MatMul, with no Add over the [patches x bank] product (which costs
    as much as a tenth of the MatMul on a CPU).

    `spacing` [M] (each entry's distance to its nearest neighbours in the bank, `bank_spacing`)
    makes the search density-aware: the product gives |q - m|^2 / s_m^2 whole. Every column is
    divided by s_m^2 and one more row, 1/s_m^2, meets |q|^2 appended to the query, so the
    nearest entry is the one nearest in units of its own neighbourhood's spacing, still in one
    MatMul."""
    bank = bank.to(torch.float32)
    centre = bank.mean(dim=0)
    bank = bank - centre
    bank_sq = (bank * bank).sum(dim=1, keepdim=True)
    rows = torch.cat([-2.0 * bank, bank_sq], dim=1)
    if spacing is not None:
        if spacing.shape != (len(bank),):
            raise ValueError(f"spacing must be [{len(bank)}], got {tuple(spacing.shape)}")
        weight = spacing.to(torch.float32).clamp_min(1e-6).pow(-2).unsqueeze(1)
        rows = torch.cat([rows * weight, weight], dim=1)
    return centre.view(1, 1, -1), rows.t().contiguous()


def bank_neighbours(bank: torch.Tensor, count: int, chunk: int = 1024
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each bank entry's `count` nearest other entries: (distances [M, count], nearest first;
    their bank indices [M, count]). Chunked: the [chunk x M] product is the only large
    buffer."""
    bank = bank.to(torch.float32)
    count = max(1, min(count, len(bank) - 1))
    sq = (bank * bank).sum(dim=1)
    dists, index = [], []
    for start in range(0, len(bank), chunk):
        rows = bank[start : start + chunk]
        d2 = sq[start : start + chunk, None] - 2.0 * rows @ bank.t() + sq[None, :]
        d2[torch.arange(len(rows)), torch.arange(start, start + len(rows))] = float("inf")
        near = d2.topk(count, dim=1, largest=False)
        dists.append(near.values.clamp_min(0.0).sqrt())
        index.append(near.indices)
    return torch.cat(dists), torch.cat(index)


def bank_spacing(bank: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """[M]: each bank entry's mean distance to its `k` nearest other entries."""
    return spacing_of(bank_neighbours(bank, k, chunk)[0], k)


def spacing_of(neighbour_distances: torch.Tensor, k: int) -> torch.Tensor:
    return neighbour_distances[:, :k].mean(dim=1).clamp_min(1e-6)


def search(
    q: torch.Tensor, projection: torch.Tensor | None, centre: torch.Tensor, matrix: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch features [N, P, C] -> (the centred queries in the bank's axes [N, P, d], the
    product for every bank entry [N, P, M]): -2 q.m + |m|^2 (add |q|^2 for squared
    distances: `squared_nearest`), or |q - m|^2 / s_m^2 whole for a density-aware matrix."""
    if projection is not None:
        q = q @ projection
    q = q - centre
    x = F.pad(q, (0, 1), value=1.0)
    if is_density_aware(matrix, q):
        x = torch.cat([x, (q * q).sum(dim=2, keepdim=True)], dim=2)
    return q, x @ matrix


def is_density_aware(matrix: torch.Tensor, q: torch.Tensor) -> bool:
    return int(matrix.shape[0]) == int(q.shape[-1]) + 2


def squared_nearest(q: torch.Tensor, nearest: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """The squared distance of the nearest entry from the product's minimum [N, P]: |q|^2 is
    the same for every bank entry, so it is added after the ReduceMin (a density-aware product
    is already whole)."""
    if is_density_aware(matrix, q):
        return nearest
    return nearest + (q * q).sum(dim=2)


class PatchCore(nn.Module):
    """Image [N, H, W, 3] uint8 -> (score [N], anomaly_map [N, H, W]) float32."""

    def __init__(
        self,
        features: PatchFeatures,
        memory_bank: torch.Tensor,
        input_hw: tuple[int, int],
        config: PatchCoreConfig,
        projection: torch.Tensor | None = None,
        spacing: torch.Tensor | None = None,
    ) -> None:
        """`projection` [C, d]: patch features are multiplied by it before the search (the
        bank holds projected features, [M, d]). `spacing` [M]: a density-aware search
        (`search_buffers`)."""
        super().__init__()
        width = features.channels if projection is None else int(projection.shape[1])
        if projection is not None and projection.shape[0] != features.channels:
            raise ValueError(f"projection must be [{features.channels}, d], got "
                             f"{tuple(projection.shape)}")
        if memory_bank.ndim != 2 or memory_bank.shape[1] != width:
            raise ValueError(
                f"memory bank must be [M, {width}], got {tuple(memory_bank.shape)}"
            )
        self.projection: torch.Tensor | None
        self.register_buffer(
            "projection", None if projection is None else projection.to(torch.float32))
        self.features = features
        self.input_hw = input_hw
        self.config = config
        centre, matrix = search_buffers(memory_bank, spacing)
        self.centre: torch.Tensor
        self.bank_matrix: torch.Tensor
        self.kernel: torch.Tensor
        self.register_buffer("centre", centre)
        self.register_buffer("bank_matrix", matrix)
        kernel = _gaussian_kernel(config.sigma) if config.sigma > 0 else torch.ones(1)
        self.register_buffer("kernel", kernel)

    @property
    def bank_size(self) -> int:
        return int(self.bank_matrix.shape[1])

    def patch_distances(
        self, image: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Nearest-neighbour distance of every patch: [N, h, w] on the feature grid.

        `exclude` [N, M] (bool, training only) hides bank entries from an image's search:
        leave-one-out scores of training images.
        """
        return self.distances(self.features(image), exclude)

    def distances(self, feats: torch.Tensor, exclude: torch.Tensor | None = None,
                  reweight: torch.Tensor | None = None) -> torch.Tensor:
        """`patch_distances` from patch features [N, C, h, w] already computed (the hybrid
        model pools the same features for its head). `reweight` [N, M] (training only, with a
        density-aware bank) multiplies each entry's squared scaled distance: (s_m / s'_m)^2
        puts it in units of a spacing s'_m recomputed without a hidden image's entries."""
        n, c, h, w = feats.shape
        q, partial = search(feats.permute(0, 2, 3, 1).reshape(n, h * w, c), self.projection,
                            self.centre, self.bank_matrix)
        if reweight is not None:
            partial = partial * reweight.unsqueeze(1)
        if exclude is not None:
            partial = partial.masked_fill(exclude.unsqueeze(1), float("inf"))
        nearest = partial.min(dim=2).values
        d = squared_nearest(q, nearest, self.bank_matrix).clamp_min(0.0).sqrt()
        return d.reshape(n, h, w)

    def smooth(self, amap: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur of [N, H, W] with edge padding."""
        if self.config.sigma <= 0:
            return amap
        k = self.kernel
        r = (k.numel() - 1) // 2
        x = F.pad(amap.unsqueeze(1), [r, r, r, r], mode="replicate")
        x = F.conv2d(x, k.view(1, 1, 1, -1))
        x = F.conv2d(x, k.view(1, 1, -1, 1))
        return x.squeeze(1)

    def map_and_score(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch distances [N, h, w] -> (score [N], smoothed map [N, H, W] at input size)."""
        up = F.interpolate(d.unsqueeze(1), size=self.input_hw, mode="bilinear", align_corners=False)
        amap = self.smooth(up.squeeze(1))
        flat = amap.flatten(1)
        frac = self.config.score_top_fraction
        if frac >= 1:  # the whole map: a plain mean, no TopK over every pixel
            score = flat.mean(dim=1)
        elif frac > 0:
            k = max(1, round(frac * flat.shape[1]))
            score = flat.topk(k, dim=1).values.mean(dim=1)
        else:
            score = flat.max(dim=1).values
        return score, amap

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.map_and_score(self.patch_distances(image))
