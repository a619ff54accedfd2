"""The shadow report: agreement, verdict flips, score correlation, and both models against the
reviewers' labels. Pure functions over `ShadowRow`s, so tests feed them known inputs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from inspector.core.metrics import share
from inspector.lifecycle.schemas import (
    Correlation,
    Flips,
    ModelStats,
    ReviewedComparison,
    ReviewedStats,
    ShadowReport,
    TypeEscapes,
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


def _against_labels(verdicts: np.ndarray, defect: np.ndarray) -> ReviewedStats:
    fail = verdicts == "fail"
    good = ~defect
    false_rejects = int((fail & good).sum())
    escapes = int((~fail & defect).sum())
    n = len(verdicts)
    return ReviewedStats(
        accuracy=share(n - false_rejects - escapes, n),
        false_rejects=false_rejects, false_reject_rate=share(false_rejects, int(good.sum())),
        escapes=escapes, escape_rate=share(escapes, int(defect.sum())),
    )


def _by_type(av: np.ndarray, sv: np.ndarray, types: np.ndarray) -> dict[str, TypeEscapes]:
    """Escapes of both models per defect type, over reviewed defects only."""
    out: dict[str, TypeEscapes] = {}
    for name in sorted(set(types)):
        of = types == name
        n = int(of.sum())
        a_esc, s_esc = int((av[of] == "pass").sum()), int((sv[of] == "pass").sum())
        out[name] = TypeEscapes(n=n, active_escapes=a_esc, active_escape_rate=share(a_esc, n),
                                shadow_escapes=s_esc, shadow_escape_rate=share(s_esc, n))
    return out


def _basis(n_defect: int, n_good: int, n: int) -> str:
    """Say what the reviewed figures rest on, and why they are not the line's rates."""
    if not n_defect + n_good:
        return f"no reviewed frames among {n}: review some to compare the models with labels"
    return (f"{n_defect + n_good} reviewed of {n} frames ({n_defect} defect, {n_good} good). "
            "Reviewers see the active model's fails first, so reviewed frames hold more of "
            "its fails than the line does: its reviewed false-reject rate reads high and its "
            "escape rate low; the shadow's are measured on the same frames.")


def _stats(verdicts: np.ndarray, scores: np.ndarray) -> ModelStats:
    n = len(verdicts)
    return ModelStats(fail_rate=share(int((verdicts == "fail").sum()), n),
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
    types = np.array([r.defect_type or "unspecified" for r in rows], dtype=object)
    is_defect = state == "defect"
    return ShadowReport(
        station=station,
        shadow_model=shadow_model,
        active_models=sorted({r.active_ref for r in rows}),
        since=since,
        until=until,
        n=n,
        agreement=share(agree, n),
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
            by_type=_by_type(av[is_defect], sv[is_defect], types[is_defect]),
            basis=_basis(int(defect.sum()), int((~defect).sum()), n),
        ),
        truncated=truncated,
        skipped_since_start=skipped,
    )
