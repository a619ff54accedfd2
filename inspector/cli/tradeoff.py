"""The trade-off table that `evaluate` and `calibrate` print: for a few thresholds, the share
of good parts rejected, of defects passed, and of each defect type passed.

A plant runs at one threshold; this table shows what moving it costs on each side before
anyone writes it into a card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inspector.core.operating import at_escape, at_frr, judge

#: Rows `calibrate` shows besides the card's threshold and the chosen one.
CALIBRATE_FRR = (0.005, 0.01, 0.02, 0.05, 0.10)
CALIBRATE_ESCAPE = (0.0, 0.01, 0.02, 0.05)

Row = tuple[str, float | None]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def tradeoff_table(good: np.ndarray, by_type: Mapping[str, np.ndarray],
                   rows: Sequence[Row]) -> list[str]:
    """Lines of the table, one row per (label, threshold), lowest threshold first; rows
    without a threshold (a class missing from the data) are left out."""
    defect = np.concatenate([*by_type.values(), np.empty(0)])
    names = [f"{t[:14]} ({s.size})" for t, s in by_type.items()]
    widths = [max(7, len(n)) for n in names]
    lines = [
        f"on {good.size} good and {defect.size} defect images (per type: escape rate)",
        f"{'':<18} {'threshold':>10} {'FRR':>7} {'escape':>7}"
        + "".join(f" {n:>{w}}" for n, w in zip(names, widths, strict=True)),
    ]
    for label, thr in sorted((r for r in rows if r[1] is not None), key=lambda r: r[1] or 0.0):
        point = judge(good, defect, thr)
        per_type = [judge(good, s, thr).escape_rate for s in by_type.values()]
        lines.append(f"{label:<18} {thr:>10.5g} {_pct(point.false_reject_rate):>7} "
                     f"{_pct(point.escape_rate):>7}"
                     + "".join(f" {_pct(v):>{w}}" for v, w in zip(per_type, widths, strict=True)))
    return lines


def _frr_label(target: float) -> str:
    return f"FRR <= {target:.1%}"


def _escape_label(target: float) -> str:
    return f"escape <= {target:.1%}"


def evaluate_rows(points: Mapping[str, Any], card_threshold: float) -> list[Row]:
    """`evaluate`'s rows: the `operating_points` thresholds and the card's."""
    rows: list[Row] = [(_frr_label(p["target"]), p["threshold"])
                       for p in points["escape_at_frr"].values()]
    rows += [(_escape_label(p["target"]), p["threshold"])
             for p in points["frr_at_escape"].values()]
    return [*rows, ("card threshold", card_threshold)]


def calibrate_rows(good: np.ndarray, defect: np.ndarray) -> list[Row]:
    """`calibrate`'s rows: a spread of false-reject and escape targets."""
    rows: list[Row] = [(_frr_label(t), at_frr(good, defect, t).threshold) for t in CALIBRATE_FRR]
    return rows + [(_escape_label(t), at_escape(good, defect, t).threshold)
                   for t in CALIBRATE_ESCAPE]
