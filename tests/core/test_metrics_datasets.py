"""Metrics against brute force, threshold calibration targets, data set layouts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core import metrics
from inspector.core.datasets import scan
from inspector.core.errors import DatasetError


def _brute_auroc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_pairwise_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # rounding makes many ties
    assert metrics.auroc(y, s) == pytest.approx(_brute_auroc(y, s))


def test_auroc_edge_cases() -> None:
    assert metrics.auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert metrics.auroc(np.array([0, 0]), np.array([0.1, 0.2])) is None


def test_threshold_for_frr_meets_the_target() -> None:
    goods = np.random.default_rng(0).normal(size=500)
    for target in (0.0, 0.01, 0.05, 0.2):
        t = metrics.threshold_for_frr(goods, target)
        assert np.mean(goods >= t) <= target
        # and it is the lowest such threshold: one step lower lets too many fail
        assert np.mean(goods >= np.nextafter(np.sort(goods)[::-1][int(target * 500)], -1)) > target


def test_threshold_for_escape_meets_the_target() -> None:
    defects = np.random.default_rng(1).normal(3, 1, size=200)
    t = metrics.threshold_for_escape(defects, 0.05)
    assert np.mean(defects < t) <= 0.05


def test_best_f1_separates_separable_scores() -> None:
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    t = metrics.threshold_best_f1(y, s)
    assert 0.3 < t <= 0.7
    assert metrics.rates_at(y, s, t).f1 == 1.0


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((8, 8), np.uint8))


def test_mvtec_layout_with_masks(tmp_path: Path) -> None:
    for name in ("train/good/a.png", "test/good/b.png", "test/crack/c.png", "test/hole/d.jpg"):
        _img(tmp_path / name)
    _img(tmp_path / "ground_truth/crack/c_mask.png")
    ds = scan(tmp_path)
    assert ds.layout == "mvtec" and len(ds.train) == 1 and len(ds.test) == 3
    by_name = {s.path.name: s for s in ds.test}
    assert by_name["c.png"].mask is not None and by_name["d.jpg"].mask is None
    assert ds.defect_types == ["crack", "hole"]


def test_mask_folder_without_test_folder_is_an_error(tmp_path: Path) -> None:
    _img(tmp_path / "train/good/a.png")
    _img(tmp_path / "ground_truth/dent/x_mask.png")
    with pytest.raises(DatasetError, match="dent"):
        scan(tmp_path)


def test_labeled_layout_is_split_stratified_and_seeded(tmp_path: Path) -> None:
    for i in range(20):
        _img(tmp_path / "good" / f"g{i}.png")
    for i in range(10):
        _img(tmp_path / "scratch" / f"s{i}.png")
    a, b = scan(tmp_path, seed=3), scan(tmp_path, seed=3)
    assert a.layout == "labeled"
    assert [s.path for s in a.test] == [s.path for s in b.test]
    for split in (a.train, a.validation, a.test):
        assert {s.label for s in split} == {"good", "scratch"}
    assert len(a.train) + len(a.validation) + len(a.test) == 30


def test_empty_or_missing_folders_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        scan(tmp_path / "missing")
    (tmp_path / "good").mkdir()
    with pytest.raises(DatasetError, match="no images in good"):
        scan(tmp_path)
