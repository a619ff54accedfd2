"""The data of a retraining run, as folders in the labelled layout (`good/`, `<defect_type>/`):

- `reviewed/`: the station's reviewed frames, one file per inspection (`<id>.<ext>`), in the
  class folder `inspector dataset export` would put it in;
- the split of those frames into training and held-out ones: stratified by class folder with
  a fixed seed (`inspector.core.datasets.scan_labeled`, as training splits labelled data);
- `train/`: the training part of the reviewed frames, plus every image of `--base-data` (the
  active model's own training data, in either layout), so goods are never too few.

The held-out frames are never copied into `train/`: both models are judged on frames neither
has seen.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from inspector.core.datasets import GOOD, Sample, scan, scan_labeled
from inspector.retrain.client import RetrainError, ReviewedFrame
from inspector.store.export import folder_for

#: Fewest reviewed frames of each class (good, defect): the held-out part then has at least
#: one of each, and training sees the rest.
MIN_PER_CLASS = 3


@dataclass(frozen=True)
class Split:
    """Reviewed frames for training and held out for the comparison."""

    train: list[Sample]
    held_out: list[Sample]

    def counts(self) -> dict[str, Counter[str]]:
        return {"train": Counter(s.label for s in self.train),
                "held_out": Counter(s.label for s in self.held_out)}


def check_enough(frames: list[ReviewedFrame], minimum: int, since: str, missing: int) -> None:
    """RetrainError unless there are `minimum` frames, MIN_PER_CLASS of each class."""
    n_good = sum(f.label == GOOD for f in frames)
    n_defect = len(frames) - n_good
    if len(frames) >= minimum and min(n_good, n_defect) >= MIN_PER_CLASS:
        return
    gone = f"; {missing} more have no stored frame" if missing else ""
    raise RetrainError(
        f"too few reviewed frames: {len(frames)} ({n_good} good, {n_defect} defect) since "
        f"{since}{gone}; retraining needs at least {minimum}, with at least {MIN_PER_CLASS} "
        f"good and {MIN_PER_CLASS} defect",
        hint="review more parts in the review desk, or reach further back with --since")


def write_reviewed(frames: Iterable[ReviewedFrame], fetch: Callable[[str], tuple[bytes, str]
                   | None], out: Path) -> tuple[int, list[str]]:
    """Each frame's bytes into `out/<class folder>/<id>.<ext>`; returns how many were written
    and the ids the server no longer had a frame for."""
    written, gone = 0, []
    for f in frames:
        got = fetch(f.inspection_id)
        if got is None:
            gone.append(f.inspection_id)
            continue
        data, ext = got
        folder = out / folder_for(f.label, f.defect_type)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{f.inspection_id}.{ext}").write_bytes(data)
        written += 1
    return written, gone


def split_reviewed(root: Path, holdout: float, seed: int) -> Split:
    """Training and held-out frames of the reviewed folder, stratified, seeded."""
    ds = scan_labeled(root, seed=seed, test_fraction=holdout)
    return Split(train=ds.train + ds.validation, held_out=ds.test)


def _copy(sample: Sample, out: Path, name: str) -> None:
    folder = out / sample.label
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sample.path, folder / name)


def training_folder(split: Split, base: Path | None, out: Path) -> Counter[str]:
    """Write `out` (labelled layout) from the split's training frames and every image of
    `base`; returns the images per class folder. Base images are renamed
    `base-<path in base with / as ->` so names never clash."""
    for s in split.train:
        _copy(s, out, s.path.name)
    if base is not None:
        ds = scan(base)
        for s in ds.train + ds.validation + ds.test:
            _copy(s, out, "base-" + s.path.relative_to(ds.root).as_posix().replace("/", "-"))
    return Counter({d.name: sum(1 for _ in d.iterdir()) for d in sorted(out.iterdir())})


def write_split(split: Split, root: Path, path: Path) -> None:
    """The split as JSON (file names relative to the reviewed folder), for the record."""
    doc = {which: sorted(s.path.relative_to(root).as_posix() for s in samples)
           for which, samples in (("train", split.train), ("held_out", split.held_out))}
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
