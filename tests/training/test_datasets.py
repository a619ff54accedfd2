"""Splits, empty folders, masks and unreadable images (no torch needed)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from inspector.core.card import InputSpec
from inspector.core.errors import DatasetError
from tests.training.conftest import make_mvtec
from training.datasets import load_splits
from training.images import load_images


def test_mvtec_holds_out_seeded_validation_goods(mvtec_set: Path) -> None:
    a = load_splits(mvtec_set, seed=1, val_fraction=0.25)
    b = load_splits(mvtec_set, seed=1, val_fraction=0.25)
    c = load_splits(mvtec_set, seed=2, val_fraction=0.25)
    assert a == b
    assert {s.path for s in a.val} != {s.path for s in c.val}
    assert len(a.val) == 3 and len(a.train) == 9
    assert not any(s.is_defect for s in a.train + a.val)
    assert {s.path for s in a.train}.isdisjoint(s.path for s in a.val)
    assert a.labels == ("good", "crack", "scratch", "spot")
    assert all(s.mask is not None for s in a.test if s.is_defect)


def test_classifier_split_shares_defects_per_type_without_overlap(mvtec_set: Path) -> None:
    s = load_splits(mvtec_set, seed=0, classifier_defect_split=(0.5, 0.25, 0.25))
    for label in ("crack", "scratch", "spot"):
        counts = [sum(x.label == label for x in part) for part in (s.train, s.val, s.test)]
        assert counts == [2, 1, 1], (label, counts)
    paths = [x.path for x in s.train + s.val + s.test]
    assert len(paths) == len(set(paths))
    assert sum(not x.is_defect for x in s.test) == 6  # test goods stay in test


def test_labeled_layout_is_split_stratified(labeled_set: Path) -> None:
    s = load_splits(labeled_set, seed=0)
    assert s.layout == "labeled"
    for part in (s.train, s.val, s.test):
        assert {x.label for x in part} == {"good", "crack", "scratch", "spot"}


def test_empty_class_folder_is_a_clear_error(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "d", n_train=2, n_good=1, n_defect=1, size=32)
    (root / "test" / "dent").mkdir()
    with pytest.raises(DatasetError, match="dent: no images"):
        load_splits(root)


def test_masks_without_defect_folder_are_a_clear_error(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "d", n_train=2, n_good=1, n_defect=1, size=32)
    (root / "ground_truth" / "scratch").rename(root / "ground_truth" / "scratches")
    with pytest.raises(DatasetError, match="scratches"):
        load_splits(root)


def test_not_a_dataset_says_what_layouts_work(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(DatasetError, match="train/good"):
        load_splits(tmp_path)


def test_unreadable_images_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_mvtec(tmp_path / "d", n_train=4, n_good=1, n_defect=1, size=32)
    (root / "train" / "good" / "broken.png").write_bytes(b"not a png")
    splits = load_splits(root, val_fraction=0.0)
    spec = InputSpec(width=24, height=16, resize="stretch", color="gray")
    with caplog.at_level(logging.WARNING):
        loaded = load_images(splits.train, spec)
    assert len(loaded) == 4 and len(loaded.skipped) == 1
    assert loaded.pixels.shape == (4, 16, 24, 3)
    assert "skipped 1 unreadable image(s) of 5" in caplog.text


def test_input_size_follows_the_cameras_aspect_ratio() -> None:
    from training.images import input_size

    assert input_size(224, 1.0) == (224, 224)
    assert input_size(224, 0.85) == (224, 224)  # near-square stays square
    assert input_size(224, 400 / 256) == (288, 192)
    assert input_size(224, 120 / 256) == (160, 320)
    w, h = input_size(256, 3.0)
    assert w % 32 == 0 and h % 32 == 0 and abs(w * h - 256 * 256) / 256**2 < 0.2


def test_median_aspect_reads_headers(tmp_path: Path) -> None:
    from training.images import median_aspect

    root = make_mvtec(tmp_path / "d", n_train=3, n_good=1, n_defect=1, size=32)
    assert median_aspect(load_splits(root).train) == 1.0


def test_copies_of_training_images_leave_validation_and_test(tmp_path: Path) -> None:
    """A file copied into train/ and test/ (7 of battery_weld/welding's 35 test goods are) is
    not evaluated on: it leaves the test split with a note naming a pair. A file of the same
    size with other bytes stays."""
    root = make_mvtec(tmp_path / "d", n_train=6, n_good=3, n_defect=2, size=32)
    before = load_splits(root, val_fraction=0.0)
    assert not any("copies" in n for n in before.notes)
    train_good = sorted((root / "train" / "good").iterdir())
    copy = root / "test" / "good" / "copied.png"
    copy.write_bytes(train_good[0].read_bytes())
    (root / "test" / "crack" / "copied_defect.png").symlink_to(train_good[1])
    near = bytearray(train_good[2].read_bytes())
    near[-5] ^= 0xFF  # same size, other bytes
    (root / "test" / "good" / "near.png").write_bytes(bytes(near))
    after = load_splits(root, val_fraction=0.0)
    tested = {s.path.name for s in after.test}
    assert "copied.png" not in tested and "copied_defect.png" not in tested
    assert "near.png" in tested and len(after.test) == len(before.test) + 1
    note = next(n for n in after.notes if "copies of training images" in n)
    assert note.startswith("2 validation or test image(s)") and " = train/good/" in note


def test_a_copy_inside_train_good_never_validates_its_twin(tmp_path: Path) -> None:
    """Validation goods are cut from train/good: where a seed cuts two copies apart, the
    validation one leaves, and where it does not, nothing is said."""
    root = make_mvtec(tmp_path / "d", n_train=6, n_good=3, n_defect=2, size=32)
    first = sorted((root / "train" / "good").iterdir())[0]
    (root / "train" / "good" / "twin.png").write_bytes(first.read_bytes())
    apart = together = 0
    for seed in range(12):
        split = load_splits(root, val_fraction=0.5, seed=seed)
        trained = {s.path.read_bytes() for s in split.train}
        assert not any(s.path.read_bytes() in trained for s in split.val)
        pair = {first.name, "twin.png"}
        in_train = len(pair & {s.path.name for s in split.train})
        in_val = len(pair & {s.path.name for s in split.val})
        cut = in_train == 1 and in_val == 0  # the seed cut them apart and the val one left
        assert cut or in_train + in_val == 2
        noted = any(n.startswith("1 validation or test image(s)") for n in split.notes)
        assert noted == cut, seed
        apart += cut
        together += not cut
    assert apart and together  # both cases were seen
