"""Fixtures for training tests: tiny synthetic data sets written on the fly (no ../shared)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspector.synth import SynthConfig, write_dataset

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def make_mvtec(
    root: Path,
    *,
    n_train: int = 12,
    n_good: int = 6,
    n_defect: int = 4,
    size: int = 96,
    seed: int = 0,
    gray: bool = True,
) -> Path:
    """An MVTec-layout set: train/good, test/good, test/{scratch,spot,crack} with masks."""
    write_dataset(root, SynthConfig(n_train, n_good, n_defect, size, seed, gray))
    return root


def make_labeled(
    root: Path, *, n_good: int = 24, n_defect: int = 10, size: int = 64, seed: int = 0
) -> Path:
    """A labeled-folder set (good/, scratch/, spot/, crack/) made from a synthetic MVTec set."""
    src = make_mvtec(
        root / "_src", n_train=n_good, n_good=0, n_defect=n_defect, size=size, seed=seed
    )
    shutil.move(str(src / "train" / "good"), str(root / "good"))
    for folder in (src / "test").iterdir():
        if folder.name != "good":
            shutil.move(str(folder), str(root / folder.name))
    shutil.rmtree(src)
    return root


@pytest.fixture(scope="session")
def mvtec_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mvtec(tmp_path_factory.mktemp("mvtec"))


@pytest.fixture(scope="session")
def labeled_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_labeled(tmp_path_factory.mktemp("labeled"))
