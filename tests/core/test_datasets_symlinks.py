"""Data sets laid out as views of symlinks (files or whole folders pointing into a larger image
store) are read by the paths as given: scanning, and finding a package's held-out split in
them, never require a file to resolve inside the data root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.core.datasets import SPLIT_FILE, samples_from_split, scan
from tests.conftest import encode_bgr
from tests.model_factory import part_image


def _store(root: Path) -> dict[str, list[Path]]:
    """Real image files in a flat store, by role."""
    root.mkdir(parents=True)
    out: dict[str, list[Path]] = {"train": [], "good": [], "scratch": []}
    for role, n, defect in (("train", 4, False), ("good", 2, False), ("scratch", 2, True)):
        for i in range(n):
            p = root / f"{role}-{i:03d}.png"
            p.write_bytes(encode_bgr(part_image(defect=defect, seed=i), ".png"))
            out[role].append(p)
    return out


def _view_of_file_links(view: Path, store: dict[str, list[Path]]) -> None:
    for role, sub in (("train", "train/good"), ("good", "test/good"), ("scratch", "test/scratch")):
        folder = view / sub
        folder.mkdir(parents=True)
        for i, target in enumerate(store[role]):
            (folder / f"{i:03d}.png").symlink_to(target)


def _view_of_folder_links(view: Path, store_root: Path) -> None:
    """Each split folder is itself a symlink to a folder elsewhere."""
    for role, sub in (("train", "train/good"), ("good", "test/good"), ("scratch", "test/scratch")):
        real = store_root / "by-role" / role
        real.mkdir(parents=True)
        for i, p in enumerate(sorted(store_root.glob(f"{role}-*.png"))):
            p.rename(real / f"{i:03d}.png")
        (view / sub).parent.mkdir(parents=True, exist_ok=True)
        (view / sub).symlink_to(real, target_is_directory=True)


def _write_split(view: Path, split_file: Path) -> None:
    """What training writes: paths relative to the data root as named, and the root."""
    ds = scan(view)
    split_file.parent.mkdir(parents=True, exist_ok=True)
    split_file.write_text(
        json.dumps(
            {
                "root": str(view.resolve()),
                "layout": ds.layout,
                "train": [s.path.relative_to(view).as_posix() for s in ds.train],
                "val": [],
                "test": [s.path.relative_to(view).as_posix() for s in ds.test],
            }
        )
    )


@pytest.mark.parametrize("kind", ["file-links", "folder-links"])
def test_held_out_split_is_found_in_a_symlinked_view(tmp_path: Path, kind: str) -> None:
    store = _store(tmp_path / "store")
    view = tmp_path / "view"
    if kind == "file-links":
        _view_of_file_links(view, store)
    else:
        _view_of_folder_links(view, tmp_path / "store")
    ds = scan(view)
    assert len(ds.train) == 4 and len(ds.test) == 4
    assert all(s.path.is_relative_to(view) for s in ds.train + ds.test)  # paths as given
    split = tmp_path / "pkg" / "report" / SPLIT_FILE
    _write_split(view, split)

    test = samples_from_split(ds, split, "test")
    assert test is not None
    assert sorted(s.path.relative_to(view).as_posix() for s in test) == [
        "test/good/000.png",
        "test/good/001.png",
        "test/scratch/000.png",
        "test/scratch/001.png",
    ]
    assert sum(s.is_defect for s in test) == 2
    train = samples_from_split(ds, split, "train")
    assert train is not None and len(train) == 4


def test_view_reached_through_a_symlinked_root(tmp_path: Path) -> None:
    """The data root itself is a link: the split written through one name is found through
    the other."""
    store = _store(tmp_path / "store")
    real_view = tmp_path / "real-view"
    _view_of_file_links(real_view, store)
    alias = tmp_path / "alias"
    alias.symlink_to(real_view, target_is_directory=True)
    split = tmp_path / "pkg" / SPLIT_FILE
    _write_split(real_view, split)
    test = samples_from_split(scan(alias), split, "test")
    assert test is not None and len(test) == 4
