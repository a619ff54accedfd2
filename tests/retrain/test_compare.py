"""The rule that decides whether a retrained model goes to the station, and its table."""

from __future__ import annotations

from inspector.retrain.compare import Standing, decide, table


def standing(model: str, escapes: int, false_rejects: int, n_good: int = 10,
             n_defect: int = 10) -> Standing:
    return Standing(model=model, threshold=0.5, n_good=n_good, n_defect=n_defect,
                    escapes=escapes, false_rejects=false_rejects,
                    escape_rate=escapes / n_defect, false_reject_rate=false_rejects / n_good,
                    image_auroc=0.9, escape_at_frr={"0.01": None, "0.05": 0.2},
                    escape_by_type={"scratch": 0.1})


def test_fewer_escapes_at_no_more_false_rejects_is_better() -> None:
    d = decide(standing("m:1", 3, 1), standing("m:2", 1, 1))
    assert d.better and "escape 30.0% -> 10.0%" in d.reason


def test_fewer_false_rejects_at_no_more_escapes_is_better() -> None:
    assert decide(standing("m:1", 2, 4), standing("m:2", 2, 1)).better


def test_worse_on_either_side_is_not_better() -> None:
    more_rejects = decide(standing("m:1", 3, 1), standing("m:2", 0, 2))
    assert not more_rejects.better and "rejects more good parts" in more_rejects.reason
    more_escapes = decide(standing("m:1", 1, 5), standing("m:2", 2, 0))
    assert not more_escapes.better and "more defects through" in more_escapes.reason


def test_equal_or_below_min_gain_is_not_better() -> None:
    assert not decide(standing("m:1", 2, 2), standing("m:2", 2, 2)).better
    small = decide(standing("m:1", 3, 1), standing("m:2", 2, 1), min_gain=0.1)
    assert not small.better and "--min-gain" in small.reason
    assert decide(standing("m:1", 3, 1), standing("m:2", 1, 1), min_gain=0.1).better


def test_table_names_both_models_and_each_figure() -> None:
    lines = table(standing("m:1", 3, 1), standing("m:2", 1, 1))
    text = "\n".join(lines)
    assert "active m:1" in text and "new m:2" in text
    assert "3/10 30.0%" in text and "1/10 10.0%" in text
    assert "escape at FRR 1%" in text and "escape: scratch" in text
    assert lines[0].startswith("on 20 held-out reviewed frames (10 good, 10 defect)")
