"""The shadow report's numbers on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.lifecycle.shadow_report import average_ranks, build_report, pearson, spearman
from inspector.store.shadow import ShadowRow


def row(a: float, s: float, a_t: float = 0.5, s_t: float = 0.5, review: str = "unreviewed",
        active: str = "m:1", defect_type: str | None = None) -> ShadowRow:
    return ShadowRow(active, a, "fail" if a >= a_t else "pass", s,
                     "fail" if s >= s_t else "pass", review, defect_type)


def test_ranks_average_ties() -> None:
    assert average_ranks(np.array([10.0, 20.0, 20.0, 5.0])).tolist() == [1.0, 2.5, 2.5, 0.0]


def test_correlations_match_hand_computed_values() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.array([2.0, 4.0, 5.0, 4.0, 5.0])
    # Pearson by hand: cov = 6/5... r = 6 / sqrt(10 * 6) = 0.7746
    assert pearson(a, b) == pytest.approx(6 / np.sqrt(60))
    # Ranks of b with ties: [0, 1.5, 3.5, 1.5, 3.5] -> rho = 0.7906 (Pearson of ranks)
    rb = np.array([0, 1.5, 3.5, 1.5, 3.5])
    ra = np.arange(5.0)
    expected = ((ra - 2) * (rb - 2)).sum() / np.sqrt(((ra - 2) ** 2).sum() * ((rb - 2) ** 2).sum())
    assert spearman(a, b) == pytest.approx(expected)
    assert spearman(a, a**3) == pytest.approx(1.0)  # monotone, not linear
    cubic = pearson(a, a**3)
    assert cubic is not None and cubic < 1.0
    assert pearson(a, np.ones(5)) is None and pearson(a[:1], a[:1]) is None


def test_report_counts_agreement_flips_and_reviews() -> None:
    rows = [
        row(0.9, 0.8, review="defect", defect_type="dent"),  # both fail, right
        row(0.7, 0.3, review="good"),      # fail -> pass: active false reject, shadow right
        row(0.6, 0.4),                     # fail -> pass, unreviewed
        row(0.2, 0.7, review="defect", defect_type="dent"),  # active escape, shadow right
        row(0.1, 0.2, review="good"),      # both pass, right
        row(0.3, 0.9, review="good"),      # pass -> fail: shadow false reject
        row(0.2, 0.1, active="m:0"),       # both pass
    ]
    r = build_report("s1", "m:2", rows, skipped=3)
    assert r.n == 7 and r.active_models == ["m:0", "m:1"]
    assert r.agreement == pytest.approx(3 / 7)
    assert (r.flips.pass_to_fail, r.flips.fail_to_pass) == (2, 2)
    a = np.array([0.9, 0.7, 0.6, 0.2, 0.1, 0.3, 0.2])
    s = np.array([0.8, 0.3, 0.4, 0.7, 0.2, 0.9, 0.1])
    assert r.score_correlation.pearson == pytest.approx(np.corrcoef(a, s)[0, 1])
    assert r.active.fail_rate == pytest.approx(3 / 7)
    assert r.shadow.fail_rate == pytest.approx(3 / 7)
    assert r.active.mean_score == pytest.approx(a.mean())
    rev = r.reviewed
    assert (rev.n, rev.n_defect, rev.n_good) == (5, 2, 3)
    assert rev.active.false_rejects == 1 and rev.active.escapes == 1
    assert rev.active.accuracy == pytest.approx(3 / 5)
    assert rev.active.false_reject_rate == pytest.approx(1 / 3)
    assert rev.active.escape_rate == pytest.approx(1 / 2)
    assert rev.shadow.false_rejects == 1 and rev.shadow.escapes == 0
    assert rev.shadow.accuracy == pytest.approx(4 / 5)
    dent = rev.by_type["dent"]
    assert (dent.n, dent.active_escapes, dent.shadow_escapes) == (2, 1, 0)
    assert dent.active_escape_rate == 0.5 and dent.shadow_escape_rate == 0.0
    assert set(rev.by_type) == {"dent"}
    assert rev.basis.startswith("5 reviewed of 7 frames (2 defect, 3 good)")
    assert r.skipped_since_start == 3 and r.truncated is False


def test_empty_report_has_nulls_not_errors() -> None:
    r = build_report("s1", "m:2", [])
    assert r.n == 0 and r.agreement is None and r.score_correlation.pearson is None
    assert r.reviewed.n == 0 and r.reviewed.active.accuracy is None
    assert r.reviewed.by_type == {} and r.reviewed.basis.startswith("no reviewed frames")


def test_defects_without_a_type_are_counted_as_unspecified() -> None:
    r = build_report("s1", "m:2", [row(0.1, 0.9, review="defect")])
    assert r.reviewed.by_type["unspecified"].active_escapes == 1
