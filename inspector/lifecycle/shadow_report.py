"""The shadow report: agreement, verdict flips, score correlation, and both models against the
reviewers' labels. Pure functions over `ShadowRow`s, so tests feed them known inputs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from inspector.lifecycle.schemas import (
    Correlation,
    Flips,
    ModelStats,
    ReviewedComparison,
    ReviewedStats,
    ShadowReport,
)
from inspector.store.shadow import ShadowRow


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their average rank (as Spearman's rho needs)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts + 1) / 2.0)[inverse]


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's r; None with fewer than two frames or a constant side."""
    if len(a) < 2:
        return None
    da, db = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((da * da).sum() * (db * db).sum()))
    if denom == 0.0 or not np.isfinite(denom):
        return None
    return float(np.clip((da * db).sum() / denom, -1.0, 1.0))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho: Pearson's r of the (tie-averaged) ranks."""
    if len(a) < 2:
        return None
    return pearson(average_ranks(a), average_ranks(b))


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def _against_labels(verdicts: np.ndarray, defect: np.ndarray) -> ReviewedStats:
    fail = verdicts == "fail"
    good = ~defect
    false_rejects = int((fail & good).sum())
    escapes = int((~fail & defect).sum())
    n = len(verdicts)
    return ReviewedStats(
        accuracy=_rate(n - false_rejects - escapes, n),
        false_rejects=false_rejects, false_reject_rate=_rate(false_rejects, int(good.sum())),
        escapes=escapes, escape_rate=_rate(escapes, int(defect.sum())),
    )


def _stats(verdicts: np.ndarray, scores: np.ndarray) -> ModelStats:
    n = len(verdicts)
    return ModelStats(fail_rate=_rate(int((verdicts == "fail").sum()), n),
                      mean_score=float(scores.mean()) if n else None)


def build_report(
    station: str,
    shadow_model: str,
    rows: Sequence[ShadowRow],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    truncated: bool = False,
    skipped: int = 0,
) -> ShadowReport:
    """Compare the shadow model with the active one on `rows`."""
    av = np.array([r.active_verdict for r in rows], dtype=object)
    sv = np.array([r.shadow_verdict for r in rows], dtype=object)
    a_score = np.array([r.active_score for r in rows], dtype=np.float64)
    s_score = np.array([r.shadow_score for r in rows], dtype=np.float64)
    state = np.array([r.review_state for r in rows], dtype=object)
    n = len(rows)
    agree = int((av == sv).sum())
    reviewed = (state == "defect") | (state == "good")
    defect = state[reviewed] == "defect"
    return ShadowReport(
        station=station,
        shadow_model=shadow_model,
        active_models=sorted({r.active_ref for r in rows}),
        since=since,
        until=until,
        n=n,
        agreement=_rate(agree, n),
        flips=Flips(pass_to_fail=int(((av == "pass") & (sv == "fail")).sum()),
                    fail_to_pass=int(((av == "fail") & (sv == "pass")).sum())),
        score_correlation=Correlation(pearson=pearson(a_score, s_score),
                                      spearman=spearman(a_score, s_score)),
        active=_stats(av, a_score),
        shadow=_stats(sv, s_score),
        reviewed=ReviewedComparison(
            n=int(reviewed.sum()), n_defect=int(defect.sum()), n_good=int((~defect).sum()),
            active=_against_labels(av[reviewed], defect),
            shadow=_against_labels(sv[reviewed], defect),
        ),
        truncated=truncated,
        skipped_since_start=skipped,
    )
