"""Data set layouts: MVTec AD and plain labeled folders. No pixels are read here.

MVTec AD:   train/good/, test/good/, test/<defect_type>/,
            ground_truth/<defect_type>/<stem>_mask.png (optional),
            train/<defect_type>/ (optional: labelled defects to train on, e.g. a hybrid model)
Labeled:    good/, <defect_type>/ (split here: stratified, seeded)
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from inspector.core.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image: its file, whether it is good, its defect type and its mask (if any)."""

    path: Path
    label: str  # "good" or the defect type
    mask: Path | None = None

    @property
    def is_defect(self) -> bool:
        return self.label != GOOD


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test samples of one data set."""

    root: Path
    layout: str
    train: list[Sample]
    test: list[Sample]
    validation: list[Sample] = field(default_factory=list)

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.label for s in self.train + self.validation + self.test if s.is_defect})


def list_images(folder: Path) -> list[Path]:
    """Image files directly in a folder, sorted by name (hidden files skipped)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def walk_images(paths: Iterable[Path]) -> list[Path]:
    """Files as given; folders expanded recursively to their image files (hidden ones
    skipped), sorted per folder. Symlinked folders are followed (Path.rglob does not before
    Python 3.13), each real folder once, so a link back up the tree cannot loop."""
    out: list[Path] = []
    for p in paths:
        if not p.is_dir():
            out.append(p)
            continue
        seen: set[tuple[int, int]] = set()
        found: list[Path] = []
        for top, dirs, files in os.walk(p, followlinks=True):
            st = os.stat(top)
            if (st.st_dev, st.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found += [Path(top) / f for f in files
                      if Path(f).suffix.lower() in IMAGE_SUFFIXES and not f.startswith(".")]
        out += sorted(f for f in found if f.is_file())
    return out


def _mask_for(root: Path, defect: str, image: Path) -> Path | None:
    folder = root / "ground_truth" / defect
    for candidate in (folder / f"{image.stem}_mask.png", folder / f"{image.stem}.png"):
        if candidate.is_file():
            return candidate
    return None


def is_mvtec(root: Path) -> bool:
    return (root / "train" / GOOD).is_dir() or (root / "test" / GOOD).is_dir()


def train_defect_folders(root: Path) -> list[Path]:
    """`train/<defect_type>/` folders of an MVTec layout: labelled defects to train on."""
    train = root / "train"
    if not train.is_dir():
        return []
    return sorted(
        d for d in train.iterdir() if d.is_dir() and d.name != GOOD and not d.name.startswith(".")
    )


def scan_mvtec(root: Path) -> Dataset:
    """Scan an MVTec AD layout; masks are matched by file name (`<stem>_mask.png`)."""
    train_dir, test_dir = root / "train" / GOOD, root / "test"
    train = [Sample(p, GOOD) for p in list_images(train_dir)] if train_dir.is_dir() else []
    for sub in train_defect_folders(root):
        train.extend(Sample(p, sub.name, _mask_for(root, sub.name, p)) for p in list_images(sub))
    test: list[Sample] = []
    if test_dir.is_dir():
        for sub in sorted(d for d in test_dir.iterdir() if d.is_dir()):
            files = list_images(sub)
            if sub.name == GOOD:
                test.extend(Sample(p, GOOD) for p in files)
            else:
                test.extend(Sample(p, sub.name, _mask_for(root, sub.name, p)) for p in files)
    if not train and not test:
        raise DatasetError(
            f"{root}: no images in train/good/ or test/",
            hint="expected the MVTec layout train/good/, test/good/, test/<defect_type>/",
        )
    gt = root / "ground_truth"
    if gt.is_dir():
        for d in sorted(p for p in gt.iterdir() if p.is_dir()):
            known = (test_dir / d.name).is_dir() or (root / "train" / d.name).is_dir()
            if any(True for _ in d.iterdir()) and not known:
                raise DatasetError(
                    f"{d}: masks for defect type {d.name!r} but no test/{d.name}/ folder",
                    hint="mask folders must match test/<defect_type>/ folder names",
                )
    return Dataset(root, "mvtec", train, test)


def scan_labeled(root: Path, *, seed: int = 0, test_fraction: float = 0.3) -> Dataset:
    """Scan `good/` + `<defect_type>/` and split it, stratified by label, with a fixed seed.

    Each label is shuffled and cut into test (test_fraction), validation (half of that) and
    train (the rest), so every split sees every defect type that has enough images.
    """
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    by_label: dict[str, list[Path]] = defaultdict(list)
    for d in folders:
        by_label[d.name] = list_images(d)
    if GOOD not in by_label or not by_label[GOOD]:
        raise DatasetError(
            f"{root}: no images in good/",
            hint="a labeled data set needs good/ and optionally one folder per defect type",
        )
    rng = random.Random(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    test: list[Sample] = []
    for label, files in sorted(by_label.items()):
        if not files:
            continue
        files = files[:]
        rng.shuffle(files)
        n_test = max(1, round(len(files) * test_fraction)) if len(files) > 1 else 0
        n_val = max(1, round(len(files) * test_fraction / 2)) if len(files) > 2 else 0
        test += [Sample(p, label) for p in files[:n_test]]
        val += [Sample(p, label) for p in files[n_test : n_test + n_val]]
        train += [Sample(p, label) for p in files[n_test + n_val :]]
    return Dataset(root, "labeled", train, test, val)


def scan(root: Path | str, *, seed: int = 0) -> Dataset:
    """Scan either layout, chosen by what the folder holds."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder", hint="pass a data set folder")
    return scan_mvtec(root) if is_mvtec(root) else scan_labeled(root, seed=seed)


def relative_name(path: Path, root: Path) -> str:
    """`path` relative to the data root, as named (symlinks are not followed: a data set may
    be a view of links into a larger image store)."""
    return path.relative_to(root).as_posix()


#: A package's `report/split.json` (written by training): files of each split, relative to
#: the data folder, so evaluation and calibration use exactly the held-out files.
SPLIT_FILE = "split.json"


def samples_from_split(ds: Dataset, split_file: Path, which: str) -> list[Sample] | None:
    """The samples that `split_file` lists under `which` ("train", "val" or "test").

    None when there is no split file, when it was made from another data folder than
    `ds.root`, or when it lists nothing under `which`: the caller then uses its own split.
    Files listed but no longer present are left out.
    """
    import json

    if not split_file.is_file():
        return None
    try:
        doc = json.loads(split_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or Path(str(doc.get("root", ""))).resolve() != ds.root.resolve():
        return None
    listed = doc.get(which)
    if not isinstance(listed, list) or not listed:
        return None
    # Paths relative to the root as the user named it, never resolved: in a view made of
    # symlinks the files live elsewhere, and only their names inside the root mean anything.
    known = {relative_name(s.path, ds.root): s for s in ds.train + ds.validation + ds.test}
    out = []
    for rel in listed:
        sample = known.get(str(rel))
        if sample is None and str(rel).startswith(("train/good/", "good/")):
            path = ds.root / str(rel)
            sample = Sample(path, GOOD) if path.is_file() else None
        if sample is not None:
            out.append(sample)
    return out
