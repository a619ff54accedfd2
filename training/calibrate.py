"""Decision threshold and heatmap colour scale from validation scores (numpy only).

The threshold math is `inspector.core.metrics` (shared with `inspector calibrate`); this
module picks the method: best F1 when validation defects exist (or a target escape rate when
one is given), else a target false-reject rate on the validation goods.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inspector.core.card import HeatmapSpec, ThresholdSpec, utcnow
from inspector.core.metrics import threshold_best_f1, threshold_for_escape, threshold_for_frr

DEFAULT_TARGET_FRR = 0.01


def calibrate(
    good_scores: np.ndarray,
    defect_scores: np.ndarray | None = None,
    *,
    target_frr: float = DEFAULT_TARGET_FRR,
    target_escape: float | None = None,
    data: str = "",
) -> ThresholdSpec:
    """The card's threshold, with its method, target and the data it was chosen on."""
    good = np.asarray(good_scores, dtype=np.float64)
    bad = np.asarray(defect_scores if defect_scores is not None else [], dtype=np.float64)
    common: dict[str, Any] = {"data": data, "n_good": int(good.size), "n_defect": int(bad.size)}
    if target_escape is not None and bad.size:
        value = threshold_for_escape(bad, target_escape)
        return ThresholdSpec(
            value=value,
            method="target_escape",
            target=target_escape,
            calibrated_at=utcnow(),
            **common,
        )
    if bad.size and good.size:
        labels = np.r_[np.zeros(good.size, bool), np.ones(bad.size, bool)]
        value = threshold_best_f1(labels, np.r_[good, bad])
        return ThresholdSpec(value=value, method="best_f1", calibrated_at=utcnow(), **common)
    if not good.size:
        raise ValueError("threshold calibration needs validation images")
    value = threshold_for_frr(good, target_frr)
    return ThresholdSpec(
        value=value, method="target_frr", target=target_frr, calibrated_at=utcnow(), **common
    )


def heatmap_scale(good_maps: np.ndarray, threshold: float) -> HeatmapSpec:
    """Colour scale for maps on the score's scale (PatchCore): blue at the median good pixel,
    red a quarter above the threshold, so a failing region shows orange to red."""
    values = np.asarray(good_maps, dtype=np.float64).ravel()
    vmin = float(np.median(values)) if values.size else 0.0
    vmax = vmin + 1.25 * max(threshold - vmin, 1e-6)
    return HeatmapSpec(vmin=vmin, vmax=vmax)
