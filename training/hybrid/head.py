"""The hybrid's supervised head: class-balanced multinomial logistic regression on
standardised descriptors, and its k-fold out-of-fold probabilities for calibration.

A linear head on fixed features is what a few labelled defects (5-50 per type) can support:
it fits in a second, full batch with L-BFGS, so a seed and the data give the same head on any
machine, and the L2 penalty keeps it from memorising the handful of defects. The
standardisation is folded into the exported `nn.Linear`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int) -> nn.Linear:
    """A linear layer over raw descriptors `x` [N, F] whose softmax predicts `y` [N]; every
    class weighs the same in the loss whatever its count."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    mean, std = xt.mean(dim=0), xt.std(dim=0).clamp_min(1e-6)
    z = (xt - mean) / std
    target = torch.from_numpy(np.asarray(y, dtype=np.int64))
    counts = torch.bincount(target, minlength=n_classes).to(torch.float64)
    weight = (1.0 / counts.clamp_min(1.0))[target]
    weight = weight / weight.sum()
    w = torch.zeros(n_classes, z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (F.cross_entropy(z @ w.T + b, target, reduction="none") * weight).sum()
        loss = loss + 0.5 * l2 * (w * w).sum() / len(z)
        loss.backward()
        return loss

    opt.step(closure)
    head = nn.Linear(z.shape[1], n_classes)
    with torch.no_grad():
        scaled = w.detach() / std
        head.weight.copy_(scaled.to(torch.float32))
        head.bias.copy_((b.detach() - scaled @ mean).to(torch.float32))
    return head.eval()


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index of every sample: each class shuffled (seeded) and dealt round the folds."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(y), dtype=np.int64)
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        folds[idx] = np.arange(len(idx)) % k
    return folds


@torch.no_grad()
def predict(head: nn.Linear, x: np.ndarray) -> np.ndarray:
    """Logits [N, C] of descriptors [N, F]."""
    return head(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


def out_of_fold(
    x: np.ndarray, y: np.ndarray, n_classes: int, *, folds: int, l2: float, max_iter: int,
    seed: int,
) -> np.ndarray:
    """Logits [N, C] of every sample from a head fitted without its fold."""
    fold = stratified_folds(y, folds, seed)
    logits = np.zeros((len(y), n_classes), dtype=np.float32)
    for f in range(folds):
        held = fold == f
        head = fit_head(x[~held], y[~held], n_classes, l2, max_iter)
        logits[held] = predict(head, x[held])
    return logits
