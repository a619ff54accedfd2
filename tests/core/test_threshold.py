"""The one threshold policy (inspector.core.threshold), used by training and `calibrate`."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.threshold import ThresholdError, choose_threshold

GOOD = np.linspace(0.0, 1.0, 101)
BAD = np.linspace(0.8, 2.0, 20)


def test_auto_picks_by_the_data() -> None:
    assert choose_threshold(GOOD).method == "target_frr"
    assert choose_threshold(GOOD, BAD).method == "best_f1"
    spec = choose_threshold(GOOD, BAD, target_escape=0.1, data="val")
    assert spec.method == "target_escape" and spec.target == 0.1 and spec.data == "val"
    assert (spec.n_good, spec.n_defect) == (101, 20)
    # A target escape rate without defects to measure it on: the goods decide.
    assert choose_threshold(GOOD, None, target_escape=0.1).method == "target_frr"


def test_target_frr_holds_on_its_data() -> None:
    spec = choose_threshold(GOOD, target_frr=0.05)
    assert np.mean(spec.value <= GOOD) <= 0.05 and spec.target == 0.05


def test_explicit_methods_fail_without_their_data() -> None:
    with pytest.raises(ThresholdError, match="needs defect images"):
        choose_threshold(GOOD, method="best_f1")
    with pytest.raises(ThresholdError, match="needs good images"):
        choose_threshold(np.array([]), BAD, method="target_frr")
    with pytest.raises(ThresholdError, match="unknown method"):
        choose_threshold(GOOD, method="median")
