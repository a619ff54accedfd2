"""The threshold policy, in one place (numpy only): training and `inspector calibrate` use it.

auto: a target escape rate when one is given and the scores include defects, best F1 when
they include goods and defects, else a target false-reject rate on the goods. An explicit
method fails when its data is missing instead of falling back. A target escape rate may be
bounded by `max_frr`: when meeting it would reject more goods than that, the threshold is the
one at `max_frr` instead, and the spec says so. Every spec records the false-reject and escape
rates its threshold gives on the scores it was chosen on.
"""

from __future__ import annotations

from typing import Any, Literal, cast, get_args

import numpy as np

from inspector.core.card import ThresholdMethod, ThresholdSpec, utcnow
from inspector.core.errors import InspectorError
from inspector.core.metrics import (
    rates_at,
    threshold_best_f1,
    threshold_for_escape,
    threshold_for_frr,
)

Method = Literal["auto", "target_frr", "best_f1", "target_escape"]
METHODS: tuple[str, ...] = get_args(Method)
DEFAULT_TARGET_FRR = 0.01


class ThresholdError(InspectorError):
    """The scores given cannot support the threshold method asked for."""

    status_code = 422


def pick_method(n_good: int, n_defect: int, target_escape: float | None) -> Method:
    """What `auto` means for this data."""
    if target_escape is not None and n_defect:
        return "target_escape"
    return "best_f1" if n_good and n_defect else "target_frr"


def choose_threshold(
    good_scores: np.ndarray,
    defect_scores: np.ndarray | None = None,
    *,
    method: str = "auto",
    target_frr: float = DEFAULT_TARGET_FRR,
    target_escape: float | None = None,
    max_frr: float | None = None,
    data: str = "",
) -> ThresholdSpec:
    """The card's threshold, with its method, target and the data it was chosen on."""
    good = np.asarray(good_scores, dtype=np.float64).ravel()
    bad = np.asarray(defect_scores if defect_scores is not None else [], dtype=np.float64).ravel()
    if method not in METHODS:
        raise ThresholdError(f"unknown method {method!r}: use {', '.join(METHODS)}")
    chosen = pick_method(good.size, bad.size, target_escape) if method == "auto" else method
    if chosen != "target_frr" and not bad.size:
        raise ThresholdError(
            f"{chosen} needs defect images in the data", hint="use --method target_frr"
        )
    if chosen != "target_escape" and not good.size:
        raise ThresholdError(f"{chosen} needs good images in the data")
    target: float | None = None
    bound = max_frr if chosen == "target_escape" else None
    if chosen == "target_escape":
        target = target_escape if target_escape is not None else 0.0
        value = threshold_for_escape(bad, target)
        frr = float(np.mean(good >= value)) if good.size else 0.0
        if max_frr is not None and frr > max_frr:
            data = (
                f"{data}; target escape rate {target:g} would reject {frr:.2%} of the "
                f"goods, over max_frr {max_frr:g}: threshold at max_frr instead"
            )
            chosen, target = "target_frr", max_frr
            value = threshold_for_frr(good, max_frr)
    elif chosen == "best_f1":
        labels = np.r_[np.zeros(good.size, bool), np.ones(bad.size, bool)]
        value = threshold_best_f1(labels, np.r_[good, bad])
    else:
        target = target_frr
        value = threshold_for_frr(good, target_frr)
    common: dict[str, Any] = {"data": data, "n_good": int(good.size), "n_defect": int(bad.size)}
    rates = rates_at(np.r_[np.zeros(good.size, bool), np.ones(bad.size, bool)], np.r_[good, bad],
                     value)
    if good.size:
        common["expected_false_reject_rate"] = rates.false_reject_rate
    if bad.size:
        common["expected_escape_rate"] = rates.escape_rate
    return ThresholdSpec(
        value=value,
        method=cast(ThresholdMethod, chosen),
        target=target,
        max_frr=bound,
        calibrated_at=utcnow(),
        **common,
    )
