"""Checks on the real data sets in ../shared/data (skipped where they are absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import SHARED_DATA
from training.datasets import load_splits

pytestmark = pytest.mark.data

MTD = SHARED_DATA / "mtd"
WELD = SHARED_DATA / "battery_weld" / "denoised"


def _need(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"{path} is absent (real data sets live in ../shared/data beside the repo)")


def test_mtd_split_is_the_published_protocol() -> None:
    _need(MTD)
    s = load_splits(MTD, val_fraction=0.0)
    assert (len(s.train), len(s.val)) == (761, 0)
    assert sum(not x.is_defect for x in s.test) == 191 and sum(x.is_defect for x in s.test) == 392
    assert s.labels == ("good", "blowhole", "break", "crack", "fray", "uneven")
    assert all(x.mask is not None for x in s.test if x.is_defect)


@pytest.mark.train
@pytest.mark.slow
def test_battery_weld_denoised_trains_to_a_useful_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    _need(WELD)
    from training.cli import train_command

    result = train_command(data=WELD, out=tmp_path / "weld" / "1")
    assert result.card.input.width * 2 == result.card.input.height  # oblong, like the frames
    assert result.evaluation is not None and result.evaluation["image_auroc"] >= 0.97
