"""Detection metrics and threshold calibration, in NumPy (shared by training and evaluation).

Convention everywhere: label 1 = defect, 0 = good; verdict is fail when score >= threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def share(k: float, n: float) -> float | None:
    """k / n, None when n is 0 (a rate with nothing to rest on is unknown, not zero)."""
    return k / n if n else None


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    None when only one class is present.
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average ranks over runs of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False-positive and true-positive rates over all thresholds (for plotting)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.flatnonzero(np.diff(s)) if s.size else np.array([], int)
    idx = np.concatenate((distinct, [y.size - 1]))
    tps = np.cumsum(y)[idx]
    fps = (idx + 1) - tps
    tpr = np.concatenate(([0.0], tps / max(1, y.sum())))
    fpr = np.concatenate(([0.0], fps / max(1, (~y).sum())))
    return fpr, tpr


@dataclass(frozen=True)
class Rates:
    """Outcome of one threshold on labeled scores."""

    threshold: float
    f1: float
    precision: float
    recall: float
    false_reject_rate: float  # goods judged fail
    escape_rate: float  # defects judged pass


def rates_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Rates:
    y = np.asarray(labels).astype(bool)
    fail = np.asarray(scores) >= threshold
    tp = int((fail & y).sum())
    fp = int((fail & ~y).sum())
    fn = int((~fail & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_good, n_def = int((~y).sum()), int(y.sum())
    return Rates(
        threshold=float(threshold),
        f1=f1,
        precision=precision,
        recall=recall,
        false_reject_rate=fp / n_good if n_good else 0.0,
        escape_rate=fn / n_def if n_def else 0.0,
    )


def threshold_for_frr(good_scores: np.ndarray, target_frr: float) -> float:
    """Lowest threshold whose false-reject rate on these goods is at most target_frr."""
    s = np.sort(np.asarray(good_scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("threshold_for_frr needs at least one good score")
    allowed = int(np.floor(target_frr * s.size))  # goods that may score >= threshold
    if allowed == 0:
        return float(np.nextafter(s[-1], np.inf))
    # Threshold just above the (allowed+1)-th largest score lets `allowed` goods through as fails.
    return float(np.nextafter(s[s.size - allowed - 1], np.inf))


def threshold_for_escape(defect_scores: np.ndarray, target_escape: float) -> float:
    """Highest threshold whose escape rate on these defects is at most target_escape."""
    s = np.sort(np.asarray(defect_scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("threshold_for_escape needs at least one defect score")
    allowed = int(np.floor(target_escape * s.size))  # defects that may score < threshold
    return float(s[min(allowed, s.size - 1)])


def threshold_best_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """Threshold (one of the scores) that maximises F1; midpoint to the next lower score."""
    s = np.unique(np.asarray(scores, dtype=np.float64))
    best_t, best_f1 = float(s[0]), -1.0
    for t in s:
        f1 = rates_at(labels, scores, float(t)).f1
        if f1 > best_f1:
            best_t, best_f1 = float(t), f1
    lower = s[s < best_t]
    return float((best_t + lower[-1]) / 2) if lower.size else best_t
