"""Data set folders -> train / validation / test samples for training.

Listing and the labeled-folder split come from `inspector.core.datasets.scan`, the same code
`inspector evaluate` and `inspector calibrate` use, so a model is never tested on images it
was trained on. On top of it, training adds:

- validation goods for the MVTec layout: `val_fraction` of `train/good`, seeded, held out of
  the memory bank so the threshold is set on images the model has not memorised;
- for a classifier on the MVTec layout (defects only in `test/`), a per-type seeded split of
  the test defects into train / val / test (`classifier_defect_split`); test goods stay in
  test;
- labelled defects for training: `train/<defect_type>/` in the MVTec layout (read by
  `scan`), or a separate folder (`labelled=`) in the labeled layout, `<defect_type>/` and
  optionally `good/`, all of it for training; a file of it that is also in the data's
  validation or test split (the same file, also through a symlink) leaves those splits, so a
  model is never evaluated on what it learnt;
- the same for copies: a validation or test image whose bytes are those of a training image
  (a file copied into both folders, as 7 of battery_weld/welding's 35 test goods are) leaves
  those splits with a note, so the false-reject figures are not measured on memorised images;
- clear errors for empty class folders and masks without a matching defect folder.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inspector.core.datasets import (
    GOOD,
    Sample,
    is_mvtec,
    list_images,
    relative_name,
    scan,
    train_defect_folders,
)
from inspector.core.errors import DatasetError
from inspector.core.package import sha256_file

__all__ = ["GOOD", "Sample", "Splits", "has_labelled_defects", "load_splits"]


@dataclass(frozen=True)
class Splits:
    """A data set split three ways. `labels` lists "good" first, then the defect types."""

    root: Path
    layout: str
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]
    test: tuple[Sample, ...]
    labels: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        def count(samples: Sequence[Sample]) -> str:
            good = sum(not s.is_defect for s in samples)
            return f"{good} good + {len(samples) - good} defect"

        return (
            f"{self.root.name} ({self.layout}): train {count(self.train)}, "
            f"val {count(self.val)}, test {count(self.test)}"
        )


def _class_folders(root: Path) -> list[Path]:
    if is_mvtec(root):
        folders = [root / "train" / GOOD, *train_defect_folders(root)]
        test = root / "test"
        if test.is_dir():
            folders += sorted(
                d for d in test.iterdir() if d.is_dir() and not d.name.startswith(".")
            )
        return folders
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def has_labelled_defects(root: Path | str, labelled: Path | str | None = None) -> bool:
    """Whether there are defect images to train on: a `labelled` folder, `train/<defect>/`
    in the MVTec layout, or defect folders beside `good/` in the labeled layout."""
    root = Path(root)
    if labelled is not None or not root.is_dir():
        return labelled is not None
    if is_mvtec(root):
        return bool(train_defect_folders(root))
    return any(f.name != GOOD for f in _class_folders(root))


def scan_labelled(folder: Path) -> list[Sample]:
    """A `labelled=` folder: `<defect_type>/` (and optionally `good/`) images, all for
    training; every class folder must hold images."""
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: no such folder", hint="--labelled takes a folder of <defect_type>/ folders"
        )
    if is_mvtec(folder):
        raise DatasetError(
            f"{folder}: an MVTec layout, not labelled folders",
            hint="--labelled takes <defect_type>/ folders (and optionally good/); in the "
            "MVTec layout put labelled defects in the data folder's train/<defect_type>/",
        )
    folders = _class_folders(folder)
    if not any(f.name != GOOD for f in folders):
        raise DatasetError(
            f"{folder}: no defect type folders", hint="put reviewed defects in <defect_type>/"
        )
    samples = []
    for sub in folders:
        files = list_images(sub)
        if not files:
            raise DatasetError(
                f"{sub}: no images (PNG, JPEG, BMP or TIFF)",
                hint="add images to the folder or remove it",
            )
        samples += [Sample(p, sub.name) for p in files]
    return samples


def _without(samples: Sequence[Sample], files: set[Path]) -> list[Sample]:
    return [s for s in samples if s.path.resolve() not in files]


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _copies(
    train: Sequence[Sample], held: Sequence[Sample], root: Path
) -> tuple[set[Sample], str | None]:
    """The samples of `held` (validation and test) whose bytes equal a training image's, and a
    note naming one such pair when there are any. A file is hashed only when a training file
    has its size, so a data set without copies costs a stat per file."""
    by_size: dict[int, list[Sample]] = {}
    for t in train:
        n = _file_size(t.path)
        if n is not None:
            by_size.setdefault(n, []).append(t)
    digests: dict[Path, str | None] = {}

    def digest(path: Path) -> str | None:
        """The file's SHA-256, once per file; None when unreadable (reading reports it later)."""
        if path not in digests:
            try:
                digests[path] = sha256_file(path)
            except OSError:
                digests[path] = None
        return digests[path]

    copies: list[tuple[Sample, Sample]] = []
    for s in held:
        size = _file_size(s.path)
        twins = by_size.get(size, []) if size is not None else []
        own = digest(s.path) if twins else None
        twin = next((t for t in twins if digest(t.path) == own), None) if own else None
        if twin is not None:
            copies.append((s, twin))
    if not copies:
        return set(), None
    s, t = copies[0]
    return {c for c, _ in copies}, (
        f"{len(copies)} validation or test image(s) are byte-for-byte copies of training images "
        f"(e.g. {_rel(s.path, root)} = {_rel(t.path, root)}): left out of those splits, so "
        "the model is not measured on images it memorised"
    )


def _rel(path: Path, root: Path) -> str:
    try:
        return relative_name(path, root)
    except ValueError:  # a --labelled folder outside the data folder
        return str(path)


def check_folders(root: Path) -> None:
    """Refuse a missing folder, a missing good class, or a class folder without images."""
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder", hint="pass the data set folder with --data")
    folders = _class_folders(root)
    if not any(f.name == GOOD and f.is_dir() for f in folders):
        raise DatasetError(
            f"{root}: no good images folder (train/good/ or good/)",
            hint="use the MVTec layout (train/good, test/good, test/<defect>) or labeled "
            "folders (good/, <defect>/)",
        )
    for folder in folders:
        if folder.is_dir() and not list_images(folder):
            raise DatasetError(
                f"{folder}: no images (PNG, JPEG, BMP or TIFF)",
                hint="add images to the folder or remove it",
            )


def _mask_notes(samples: Sequence[Sample], root: Path) -> list[str]:
    notes = []
    for label in sorted({s.label for s in samples if s.is_defect}):
        of_type = [s for s in samples if s.label == label]
        missing = [s for s in of_type if s.mask is None]
        if (root / "ground_truth" / label).is_dir() and missing:
            notes.append(
                f"{root / 'test' / label}: {len(missing)} of {len(of_type)} images have no mask "
                f"(e.g. {missing[0].path.name}); pixel metrics skip them"
            )
    return notes


def _cut(
    items: Sequence[Sample], fractions: Sequence[float], rng: random.Random
) -> list[list[Sample]]:
    """Shuffle and cut by `fractions` (the last part takes the rest); every part after the
    first gets at least one item when there are enough, so small classes reach val and test."""
    shuffled = list(items)
    rng.shuffle(shuffled)
    n = len(shuffled)
    sizes = [round(f * n) for f in fractions[:-1]]
    for i in range(1, len(sizes)):
        if sizes[i] == 0 and n >= len(fractions):
            sizes[i] = 1
    parts, start = [], 0
    for size in sizes:
        parts.append(shuffled[start : start + size])
        start += size
    parts.append(shuffled[start:])
    if not parts[-1] and n >= len(fractions) and fractions[-1] > 0:
        parts[-1].append(parts[0].pop())
    return parts


def load_splits(
    root: Path | str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    classifier_defect_split: tuple[float, float, float] | None = None,
    labelled: Path | str | None = None,
) -> Splits:
    """List and split a data set folder (see the module docstring)."""
    root = Path(root)
    check_folders(root)
    ds = scan(root, seed=seed)
    rng = random.Random(seed)
    notes = _mask_notes(ds.test, root)
    if ds.layout == "mvtec":
        fit, val = _cut(ds.train, (1.0 - val_fraction, val_fraction), rng)
        train, test = fit, list(ds.test)
        if classifier_defect_split is not None:
            test = [s for s in ds.test if not s.is_defect]
            for label in ds.defect_types:
                a, b, c = _cut(
                    [s for s in ds.test if s.label == label], classifier_defect_split, rng
                )
                train, val, test = train + a, val + b, test + c
    else:
        train, val, test = list(ds.train), list(ds.validation), list(ds.test)
    if labelled is not None:
        extra = scan_labelled(Path(labelled))
        files = {s.path.resolve() for s in extra}
        kept_val, kept_test = _without(val, files), _without(test, files)
        moved = len(val) + len(test) - len(kept_val) - len(kept_test)
        if moved:
            notes.append(f"{moved} labelled image(s) of {labelled} are also in {root}'s "
                         "validation or test split: left out of those splits")
        train, val, test = [*_without(train, files), *extra], kept_val, kept_test
    copies, note = _copies(train, [*val, *test], root)
    if note:
        notes.append(note)
        val, test = [v for v in val if v not in copies], [t for t in test if t not in copies]
    if not any(not s.is_defect for s in train):
        raise DatasetError(f"{root}: no good images left for training", hint="add good images")
    return Splits(
        root=root,
        layout=ds.layout,
        train=tuple(train),
        val=tuple(val),
        test=tuple(test),
        labels=(GOOD, *sorted({s.label for s in (*train, *val, *test) if s.is_defect})),
        notes=tuple(notes),
    )
