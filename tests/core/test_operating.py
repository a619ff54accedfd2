"""Operating-point metrics and AUPRO on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.operating import (
    MetricsError,
    at_escape,
    at_frr,
    aupro,
    card_metrics,
    label_regions,
    operating_points,
    tradeoff_curve,
)

GOOD = np.arange(100, dtype=float)  # 0..99


def test_perfectly_separated_scores_escape_nothing_and_reject_nothing() -> None:
    p = operating_points(GOOD, {"crack": np.arange(200, 210.0)})
    for point in p.escape_at_frr.values():
        assert point.escape_rate == 0.0 and point.escapes == 0
    for point in p.frr_at_escape.values():
        assert point.false_reject_rate == 0.0
    assert p.per_type["crack"].n == 10
    assert p.per_type["crack"].escape_at_frr == {"0.01": 0.0, "0.02": 0.0, "0.05": 0.0}


def test_known_overlap_gives_exact_escape_rates() -> None:
    # FRR 2% on goods 0..99: two goods (98, 99) may fail, so the threshold sits just above 97.
    # Defects 90..99 (10 of them): 90..97 pass (8 escapes), 98 and 99 fail.
    defects = np.arange(90, 100, dtype=float)
    point = at_frr(GOOD, defects, 0.02)
    assert point.false_rejects == 2 and point.false_reject_rate == pytest.approx(0.02)
    assert point.escapes == 8 and point.escape_rate == pytest.approx(0.8)
    # FRR 5%: goods 95..99 fail; defects 90..94 escape.
    assert at_frr(GOOD, defects, 0.05).escape_rate == pytest.approx(0.5)
    # Escape 0: threshold = the lowest defect (90); goods 90..99 fail: FRR 10%.
    zero = at_escape(GOOD, defects, 0.0)
    assert zero.threshold == 90.0 and zero.false_reject_rate == pytest.approx(0.10)
    # Escape 10% of 10 defects = 1 may pass: threshold 91, goods 91..99 fail.
    assert at_escape(GOOD, defects, 0.10).false_reject_rate == pytest.approx(0.09)


def test_per_type_figures_differ_by_type() -> None:
    p = operating_points(GOOD, {"crack": [150.0, 160.0], "fray": [50.0, 99.5]},
                         frr_targets=(0.01,), escape_targets=(0.0,))
    # FRR 1% threshold sits just above 98: fray's 50 escapes, crack never does.
    assert p.escape_at_frr["0.01"].escape_rate == pytest.approx(0.25)
    assert p.per_type["fray"].escape_at_frr["0.01"] == pytest.approx(0.5)
    assert p.per_type["crack"].escape_at_frr["0.01"] == 0.0
    # Catching every fray needs the threshold at 50: goods 50..99 fail.
    assert p.per_type["fray"].frr_at_escape["0"] == pytest.approx(0.5)
    assert p.per_type["crack"].frr_at_escape["0"] == 0.0
    assert p.frr_at_escape["0"].false_reject_rate == pytest.approx(0.5)


def test_ties_never_break_the_target() -> None:
    good = np.array([1.0, 1.0, 1.0, 1.0])
    point = at_frr(good, np.array([1.0]), 0.5)  # all tied: no threshold lets only 2 fail
    assert point.false_reject_rate == 0.0 and point.escape_rate == 1.0
    esc = at_escape(good, np.array([1.0, 1.0]), 0.0)
    assert esc.escape_rate == 0.0 and esc.false_reject_rate == 1.0


def test_missing_classes_give_nulls_not_errors() -> None:
    no_defects = operating_points(GOOD, {})
    assert no_defects.n_defect == 0 and no_defects.per_type == {}
    assert no_defects.escape_at_frr["0.01"].escape_rate is None
    assert no_defects.escape_at_frr["0.01"].false_reject_rate == pytest.approx(0.01)
    assert no_defects.frr_at_escape["0"].threshold is None
    no_goods = operating_points([], {"crack": [1.0, 2.0]})
    assert no_goods.escape_at_frr["0.01"].threshold is None
    assert no_goods.frr_at_escape["0"].threshold == 1.0
    assert no_goods.frr_at_escape["0"].false_reject_rate is None
    assert no_goods.per_type["crack"].escape_at_frr["0.01"] is None
    nothing = operating_points([], {})
    assert nothing.as_dict()["escape_at_frr"]["0.05"]["escape_rate"] is None


def test_nan_scores_are_a_clear_error() -> None:
    with pytest.raises(MetricsError, match="1 of 3 crack scores are NaN"):
        operating_points(GOOD, {"crack": [1.0, np.nan, 2.0]})
    with pytest.raises(MetricsError, match="pixel scores"):
        aupro(np.array([0, 1]), np.array([np.inf, 0.0]))


def test_tradeoff_curve_moves_both_rates() -> None:
    thr, frr, esc = tradeoff_curve(np.array([0.0, 1.0, 2.0, 3.0]), np.array([2.0, 4.0]))
    assert thr.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert frr.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert esc.tolist() == [0.0, 0.0, 0.0, 0.5, 0.5]


def two_regions() -> np.ndarray:
    mask = np.zeros((10, 10), bool)
    mask[1:3, 1:3] = True  # region A: 4 px
    mask[6:9, 6:9] = True  # region B: 9 px
    return mask


def test_label_regions_counts_separate_blobs_and_offsets_ids() -> None:
    ids, n = label_regions(two_regions(), first_id=5)
    assert n == 2 and sorted(np.unique(ids).tolist()) == [0, 5, 6]
    assert (ids == 5).sum() == 4 and (ids == 6).sum() == 9


def test_aupro_of_a_perfect_map_is_one() -> None:
    mask = two_regions()
    ids, _ = label_regions(mask)
    assert aupro(ids, mask.astype(float)) == pytest.approx(1.0)


def test_aupro_of_a_constant_map_is_the_area_under_the_diagonal() -> None:
    # One threshold: (FPR, PRO) jumps from (0, 0) to (1, 1); the diagonal up to 0.3 holds
    # 0.3^2 / 2 = 0.045, normalised by 0.3: 0.15.
    ids, _ = label_regions(two_regions())
    assert aupro(ids, np.full(ids.shape, 0.7)) == pytest.approx(0.15)


def test_aupro_averages_regions_not_pixels() -> None:
    # Region A (4 px) found, region B (9 px) scored like the background: PRO jumps to 0.5 at
    # FPR 0, then rises linearly to 1 at FPR 1: area to 0.3 = 0.3*0.5 + 0.3^2/4 = 0.1725.
    mask = two_regions()
    ids, _ = label_regions(mask)
    scores = np.zeros(mask.shape)
    scores[1:3, 1:3] = 1.0
    assert aupro(ids, scores) == pytest.approx(0.1725 / 0.3)
    # Find the large region instead: the same PRO (regions weigh alike) although 9 px > 4 px.
    scores = np.zeros(mask.shape)
    scores[6:9, 6:9] = 1.0
    assert aupro(ids, scores) == pytest.approx(0.1725 / 0.3)


def test_aupro_is_none_without_regions_or_background() -> None:
    assert aupro(np.zeros(10, int), np.arange(10.0)) is None
    assert aupro(np.ones(10, int), np.arange(10.0)) is None
    with pytest.raises(MetricsError, match="3 region ids for 2"):
        aupro(np.zeros(3, int), np.zeros(2))


def test_card_metrics_are_flat_keys_for_the_card() -> None:
    points = operating_points(GOOD, {"crack": [150.0], "fray": [50.0]},
                              frr_targets=(0.01,), escape_targets=(0.0,)).as_dict()
    assert card_metrics(points) == {
        "escape_at_frr_0.01": 0.5, "frr_at_escape_0": 0.5,
        "escape_at_frr_0.01/crack": 0.0, "frr_at_escape_0/crack": 0.0,
        "escape_at_frr_0.01/fray": 1.0, "frr_at_escape_0/fray": 0.5,
    }
