"""Operating-point metrics: what a line sees at one threshold, and region-level localisation.

Image AUROC ranks a model over every threshold; a plant runs at one. These figures answer the
plant's questions: how many defects pass (escape) when at most 1/2/5 % of good parts are
rejected, and how many good parts are rejected to let at most 0/1/2 % of defects through,
overall and per defect type. AUPRO (Bergmann et al., MVTec AD) scores heatmaps per defect
region, so one large blob cannot hide many small missed ones, as it can in pixel AUROC.

Convention as in `metrics`: higher score = more defective; fail when score >= threshold.
NumPy and OpenCV only (no torch, no plotting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from inspector.core.errors import InspectorError
from inspector.core.metrics import share, threshold_for_escape, threshold_for_frr

#: False-reject targets at which the escape rate is reported.
FRR_TARGETS: tuple[float, ...] = (0.01, 0.02, 0.05)
#: Escape targets at which the false-reject rate is reported.
ESCAPE_TARGETS: tuple[float, ...] = (0.0, 0.01, 0.02)
#: AUPRO integrates the PRO curve over false-positive rates up to this limit (MVTec AD).
AUPRO_FPR_LIMIT = 0.3


class MetricsError(InspectorError):
    """Scores that no metric can be computed from (NaN or infinite values)."""

    status_code = 422


def finite_scores(scores: np.ndarray | Sequence[float], what: str) -> np.ndarray:
    """Scores as float64; MetricsError when any is NaN or infinite (a broken model output
    would otherwise sort into a silently wrong figure)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    bad = int((~np.isfinite(s)).sum())
    if bad:
        raise MetricsError(
            f"{bad} of {s.size} {what} are NaN or infinite",
            hint="the model's output is broken for these inputs; check the export and its "
            "parity before judging it",
        )
    return s


def target_key(target: float) -> str:
    """A target as a JSON key: 0.01 -> "0.01", 0.0 -> "0"."""
    return f"{target:g}"


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold and what it does. None where the data to measure a figure is missing."""

    #: The rate the threshold was set for (None: a threshold given, e.g. the card's).
    target: float | None
    threshold: float | None
    false_reject_rate: float | None
    escape_rate: float | None
    false_rejects: int | None
    escapes: int | None


def judge(good: np.ndarray, defect: np.ndarray, threshold: float | None,
          target: float | None = None) -> OperatingPoint:
    """Counts and rates of one threshold on good and defect scores."""
    if threshold is None:
        return OperatingPoint(target, None, None, None, None, None)
    fr = int((good >= threshold).sum())
    esc = int((defect < threshold).sum())
    return OperatingPoint(
        target=target, threshold=float(threshold),
        false_reject_rate=share(fr, good.size), escape_rate=share(esc, defect.size),
        false_rejects=fr if good.size else None, escapes=esc if defect.size else None,
    )


def at_frr(good: np.ndarray, defect: np.ndarray, target: float) -> OperatingPoint:
    """The lowest threshold whose false-reject rate on `good` is <= target, and its escapes."""
    return judge(good, defect, threshold_for_frr(good, target) if good.size else None, target)


def at_escape(good: np.ndarray, defect: np.ndarray, target: float) -> OperatingPoint:
    """The highest threshold whose escape rate on `defect` is <= target, and its rejects."""
    thr = threshold_for_escape(defect, target) if defect.size else None
    return judge(good, defect, thr, target)


@dataclass(frozen=True)
class TypePoints:
    """One defect type: its escape rate at each overall FRR threshold, and the false-reject
    rate needed to hold that type alone to each escape target."""

    n: int
    escape_at_frr: dict[str, float | None]
    frr_at_escape: dict[str, float | None]


@dataclass(frozen=True)
class OperatingPoints:
    """`operating_points` of `inspector evaluate --json`."""

    n_good: int
    n_defect: int
    escape_at_frr: dict[str, OperatingPoint]
    frr_at_escape: dict[str, OperatingPoint]
    per_type: dict[str, TypePoints] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def operating_points(
    good_scores: np.ndarray | Sequence[float],
    defect_scores: Mapping[str, np.ndarray | Sequence[float]],
    frr_targets: Sequence[float] = FRR_TARGETS,
    escape_targets: Sequence[float] = ESCAPE_TARGETS,
) -> OperatingPoints:
    """Escape at each FRR target and FRR at each escape target, overall and per defect type.

    `defect_scores` maps defect type -> scores. Without goods the FRR-side thresholds are
    None (nothing to set them on); without defects the escape figures are None.
    """
    good = finite_scores(good_scores, "good scores")
    by_type = {t: finite_scores(s, f"{t} scores") for t, s in sorted(defect_scores.items())}
    defect = np.concatenate([*by_type.values(), np.empty(0)])
    escape_at = {target_key(t): at_frr(good, defect, t) for t in frr_targets}
    frr_at = {target_key(t): at_escape(good, defect, t) for t in escape_targets}
    per_type = {
        name: TypePoints(
            n=int(s.size),
            escape_at_frr={k: judge(good, s, p.threshold).escape_rate
                           for k, p in escape_at.items()},
            frr_at_escape={target_key(t): at_escape(good, s, t).false_reject_rate
                           for t in escape_targets},
        )
        for name, s in by_type.items()
    }
    return OperatingPoints(int(good.size), int(defect.size), escape_at, frr_at, per_type)


def tradeoff_curve(good_scores: np.ndarray, defect_scores: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, false-reject rates, escape rates) at every distinct score, ascending by
    threshold: the cost curve as the threshold moves. Rates are NaN for a missing class."""
    good = finite_scores(good_scores, "good scores")
    defect = finite_scores(defect_scores, "defect scores")
    thresholds = np.unique(np.concatenate([good, defect]))
    g, d = np.sort(good), np.sort(defect)
    # fail when score >= t: rejected goods = those at or above t, escapes = defects below t.
    frr = (g.size - np.searchsorted(g, thresholds, "left")) / g.size if g.size else \
        np.full(thresholds.size, np.nan)
    esc = np.searchsorted(d, thresholds, "left") / d.size if d.size else \
        np.full(thresholds.size, np.nan)
    return thresholds, frr, esc


def label_regions(mask: np.ndarray, first_id: int = 1) -> tuple[np.ndarray, int]:
    """Connected defect regions of a boolean mask (8-connectivity, as MVTec AD's `label`):
    int32 ids from `first_id` up, 0 outside; and the number of regions."""
    n, labels = cv2.connectedComponents(np.asarray(mask, dtype=np.uint8), connectivity=8)
    labels = labels.astype(np.int32)
    labels[labels > 0] += first_id - 1
    return labels, int(n) - 1


def aupro(region_ids: np.ndarray, scores: np.ndarray,
          fpr_limit: float = AUPRO_FPR_LIMIT) -> float | None:
    """Area under the per-region-overlap curve up to `fpr_limit`, divided by `fpr_limit`.

    `region_ids` holds, per pixel (all images concatenated), 0 for a defect-free pixel or the
    id of the ground-truth region it belongs to (ids unique across images, see
    `label_regions`). At every threshold, PRO is the mean over regions of the share of each
    region's pixels at or above it, and the FPR the share of defect-free pixels at or above
    it. Exact over all thresholds: each pixel adds its weight to PRO or FPR as the
    threshold falls past its score. None without regions or without defect-free pixels.
    """
    ids = np.asarray(region_ids).ravel()
    s = finite_scores(scores, "pixel scores")
    if ids.size != s.size:
        raise MetricsError(f"aupro: {ids.size} region ids for {s.size} pixel scores")
    normal = ids == 0
    present, sizes = np.unique(ids[~normal], return_counts=True)
    n_normal = int(normal.sum())
    if not present.size or not n_normal or not 0 < fpr_limit <= 1:
        return None
    # PRO weight of a region pixel: 1 / (region size * number of regions); 0 outside (inf).
    size_of = np.full(int(present.max()) + 1, np.inf)
    size_of[present] = sizes
    pro_w = 1.0 / (size_of[ids] * present.size)
    order = np.argsort(-s, kind="mergesort")
    last_of_run = np.r_[np.flatnonzero(np.diff(s[order])), s.size - 1]
    # Counts, not summed fractions: the curve ends at FPR 1.0 exactly.
    fpr = np.r_[0.0, np.cumsum(normal[order])[last_of_run] / n_normal]
    pro = np.r_[0.0, np.cumsum(pro_w[order])[last_of_run]]
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    if x[-1] < fpr_limit:  # close the area at the limit on the segment that crosses it
        nxt = int(keep.sum())
        y_end = np.interp(fpr_limit, fpr[nxt - 1: nxt + 1], pro[nxt - 1: nxt + 1])
        x, y = np.r_[x, fpr_limit], np.r_[y, y_end]
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    return area / fpr_limit


def card_metrics(points: Mapping[str, Any]) -> dict[str, float | None]:
    """`OperatingPoints.as_dict()` as the card's flat metrics: `escape_at_frr_0.01`,
    `frr_at_escape_0`, and per type `escape_at_frr_0.01/crack`, `frr_at_escape_0/crack`
    (report/metrics.json keeps the full structure, thresholds and counts included)."""
    out: dict[str, float | None] = {}
    for target, p in points["escape_at_frr"].items():
        out[f"escape_at_frr_{target}"] = p["escape_rate"]
    for target, p in points["frr_at_escape"].items():
        out[f"frr_at_escape_{target}"] = p["false_reject_rate"]
    for name, t in points["per_type"].items():
        for side in ("escape_at_frr", "frr_at_escape"):
            out.update({f"{side}_{target}/{name}": v for target, v in t[side].items()})
    return out
