"""A data set seen through a view of symlinks (the usual way to pick images from a larger
store without copying them): train on it, then `inspector evaluate --json` and `inspector
calibrate` on the same view use the package's held-out split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")

from inspector.core.card import read_card
from tests.cli.test_inspect import run_cli
from training.cli import train_command

pytestmark = [pytest.mark.train, pytest.mark.slow]


def make_view(store: Path, view: Path) -> Path:
    """train/good: a real folder of file links; test/* and ground_truth: folder links."""
    (view / "train" / "good").mkdir(parents=True)
    for image in sorted((store / "train" / "good").iterdir()):
        (view / "train" / "good" / image.name).symlink_to(image)
    (view / "test").mkdir()
    for folder in sorted((store / "test").iterdir()):
        (view / "test" / folder.name).symlink_to(folder, target_is_directory=True)
    (view / "ground_truth").symlink_to(store / "ground_truth", target_is_directory=True)
    return view


def test_train_evaluate_calibrate_on_a_view_of_symlinks(mvtec_set: Path, tmp_path: Path) -> None:
    view = make_view(mvtec_set, tmp_path / "view")
    assert os.path.islink(view / "test" / "good") and os.path.islink(view / "train/good/000.png")
    out = tmp_path / "models" / "view" / "1"
    # A quarter of train/good held out: the package's val split, which calibrate must use.
    train_command(data=view, out=out, image_size=64, val_fraction=0.25, seed=1)
    split = json.loads((out / "report" / "split.json").read_text())
    assert split["val"] and all(name.startswith("train/good/") for name in split["val"])
    assert split["test"] and all(name.startswith("test/") for name in split["test"])

    proc = run_cli("evaluate", out, "--data", view, "--json", "--no-report")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["n_good"] + metrics["n_defect"] == len(split["test"])
    assert metrics["image_auroc"] is not None

    proc = run_cli("calibrate", out, "--data", view, "--method", "target_frr")
    assert proc.returncode == 0, proc.stderr
    assert f"using the {len(split['val'])} val files of report/split.json" in proc.stderr
    card = read_card(out / "card.json")
    assert card.threshold.n_good == len(split["val"]) and card.threshold.method == "target_frr"
