"""Greedy k-center coreset selection (PatchCore's memory-bank subsampling).

Picking each next point as the one farthest from everything chosen so far keeps the rare
patches (edges, texture extremes) that random subsampling would drop, so a bank of ~1% of
the patches scores almost as well as all of them.

On a CPU the cost is one matrix-vector product over the candidates per chosen point, so the
candidates are first capped by a seeded random draw, and distances are measured after a
random projection to `proj_dim` dimensions (Johnson-Lindenstrauss: distances survive).
"""

from __future__ import annotations

import numpy as np

from inspector.progress import task


def greedy_coreset(
    features: np.ndarray,
    n: int,
    *,
    seed: int = 0,
    proj_dim: int = 64,
    max_candidates: int = 150_000,
) -> np.ndarray:
    """Indices (into `features` [N, C]) of `n` points chosen by greedy k-center."""
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"features must be a non-empty [N, C] array, got {features.shape}")
    rng = np.random.default_rng(seed)
    total = len(features)
    if total > max_candidates:
        candidates = np.sort(rng.choice(total, max_candidates, replace=False))
    else:
        candidates = np.arange(total)
    z = np.asarray(features[candidates], dtype=np.float32)
    if proj_dim and z.shape[1] > proj_dim:
        projection = rng.standard_normal((z.shape[1], proj_dim)).astype(np.float32)
        z = z @ (projection / np.sqrt(proj_dim))
    z = np.ascontiguousarray(z)
    n = min(n, len(z))
    sq = np.einsum("ij,ij->i", z, z)
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = int(rng.integers(len(z)))
    nearest = sq - 2.0 * (z @ z[chosen[0]]) + sq[chosen[0]]
    step = max(1, n // 100)
    with task("coreset selection", n) as bar:
        bar.advance(1)
        for k in range(1, n):
            i = int(np.argmax(nearest))
            chosen[k] = i
            np.minimum(nearest, sq - 2.0 * (z @ z[i]) + sq[i], out=nearest)
            if k % step == 0:
                bar.advance(step)
    return candidates[chosen]
