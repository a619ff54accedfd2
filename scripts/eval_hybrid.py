"""Acceptance protocol of the hybrid model (issue 11): a few labelled defects per type, the
rest of the data set's test split for evaluation, and the good-only default beside it.

For each data set a view of symlinks is made: train/good as it is, `--per-type` images of
every test/<type> (seeded) moved to train/<type> (the labelled defects), the rest of test/ for
evaluation. On that view it trains the default kind (auto = hybrid, as labelled defects are
there) and the good-only anomaly model, scores the evaluation split through inspector.core (as
the server does), and prints per model and per defect type: image AUROC, escape rate at
false-reject rates of 1/2/5% (thresholds set on the evaluation goods: the best any threshold
can do), the false-reject rate at 1% escape, and both rates at the card's own threshold (the
one the model ships with, chosen without the evaluation images). Needs the [train] extra.

    python scripts/eval_hybrid.py                       # MTD and battery_weld/welding
    python scripts/eval_hybrid.py --sets denoised       # battery_weld/denoised
    python scripts/eval_hybrid.py --sets mtd --per-type 10 --seed 0 --json /tmp/hybrid.json
    python scripts/eval_hybrid.py --kinds auto          # the default model only
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inspector.cli.model import parse_overrides
from inspector.core.datasets import GOOD, list_images
from inspector.core.metrics import auroc, threshold_for_escape, threshold_for_frr
from inspector.core.pipeline import Detector
from inspector.evaluation import evaluate
from training.config import TrainConfig
from training.datasets import load_splits
from training.train import run_training

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {"mtd": SHARED / "mtd", "welding": SHARED / "battery_weld" / "welding",
        "denoised": SHARED / "battery_weld" / "denoised"}
FRRS = (0.01, 0.02, 0.05)
ESCAPE = 0.01


def make_view(store: Path, view: Path, per_type: int, seed: int) -> dict[str, int]:
    """The view described in the module docstring; returns labelled images per type."""
    rng = random.Random(seed)
    (view / "train").mkdir(parents=True)
    (view / "train" / GOOD).symlink_to(store / "train" / GOOD, target_is_directory=True)
    (view / "ground_truth").symlink_to(store / "ground_truth", target_is_directory=True)
    labelled = {}
    for folder in sorted(d for d in (store / "test").iterdir() if d.is_dir()):
        files = list_images(folder)
        picked = set() if folder.name == GOOD else set(rng.sample(files, min(per_type, len(files))))
        for part, chosen in (("train", True), ("test", False)):
            target = view / part / folder.name
            for f in files:
                if (f in picked) == chosen:
                    target.mkdir(parents=True, exist_ok=True)
                    (target / f.name).symlink_to(f)
        if picked:
            labelled[folder.name] = len(picked)
    return labelled


def rates(good: np.ndarray, bad: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-reject rate, escape rate) at a threshold (fail when score >= threshold)."""
    return float(np.mean(good >= threshold)), float(np.mean(bad < threshold))


def figures(good: np.ndarray, bad: np.ndarray, card_threshold: float) -> dict[str, Any]:
    labels = np.r_[np.zeros(good.size, bool), np.ones(bad.size, bool)]
    out: dict[str, Any] = {"n_good": int(good.size), "n_defect": int(bad.size),
                           "image_auroc": auroc(labels, np.r_[good, bad])}
    for frr in FRRS:
        out[f"escape_at_frr_{frr:g}"] = rates(good, bad, threshold_for_frr(good, frr))[1]
    out[f"frr_at_escape_{ESCAPE:g}"] = rates(good, bad, threshold_for_escape(bad, ESCAPE))[0]
    out["card_frr"], out["card_escape"] = rates(good, bad, card_threshold)
    return out


def score_model(out: Path, view: Path) -> dict[str, Any]:
    """Figures on the view's test split, overall and per defect type."""
    detector = Detector.load(out)
    result = evaluate(detector, list(load_splits(view, val_fraction=0.0).test), batch=8)
    s, y = result.scores, result.labels
    types = np.array([x.sample.label for x in result.scored])
    per_type = {t: figures(s[~y], s[types == t], detector.threshold)
                for t in sorted(set(types[y]))}
    return {**figures(s[~y], s[y], detector.threshold), "per_type": per_type,
            "kind": detector.card.kind, "threshold": detector.card.threshold.model_dump(
                mode="json", exclude_none=True)}


def train(view: Path, out: Path, kind: str, seed: int, extra: dict[str, Any] | None = None
          ) -> tuple[Path, float]:
    started = time.monotonic()
    knobs = {**(extra or {}), "seed": seed}
    if kind != "auto":
        knobs["kind"] = kind
    result = run_training(view, out, TrainConfig.from_knobs(knobs))
    return result.out, time.monotonic() - started


def print_table(name: str, model: str, f: dict[str, Any], seconds: float) -> None:
    head = (f"{'type':>10} {'good':>5} {'def':>4} {'AUROC':>7} "
            + " ".join(f"esc@FRR{x:g}".rjust(11) for x in FRRS)
            + f" {'FRR@esc1%':>10} {'card FRR':>9} {'card esc':>9}")
    print(f"\n{name}: {model} ({f['kind']}, trained in {seconds:.0f} s wall clock)")
    print(head)
    rows = [("all", f), *f["per_type"].items()]
    for label, r in rows:
        cells = [f"{r['image_auroc']:.4f}" if r["image_auroc"] is not None else "-"]
        cells += [f"{r[f'escape_at_frr_{x:g}']:.3f}" for x in FRRS]
        cells += [f"{r[f'frr_at_escape_{ESCAPE:g}']:.3f}", f"{r['card_frr']:.3f}",
                  f"{r['card_escape']:.3f}"]
        print(f"{label:>10} {r['n_good']:>5} {r['n_defect']:>4} {cells[0]:>7} "
              + " ".join(c.rjust(11) for c in cells[1:4])
              + f" {cells[4]:>10} {cells[5]:>9} {cells[6]:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="mtd,welding",
                        help="comma-separated: mtd, welding, denoised (battery_weld's two)")
    parser.add_argument("--per-type", type=int, default=10, help="labelled defects per type")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="auto,anomaly",
                        help="models to train: auto (the default, hybrid here), anomaly")
    parser.add_argument("--work", type=Path, default=None, help="folder for views and models")
    parser.add_argument("--json", type=Path, default=None, help="write all figures here")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a training knob for every model trained, as `inspector train "
                        "--set` takes it (e.g. density=3); repeatable")
    args = parser.parse_args()
    try:  # the same `key=value` parsing as `inspector train --set`
        extra = parse_overrides(args.set)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    work = args.work or Path(tempfile.mkdtemp(prefix="eval_hybrid-"))
    report: dict[str, Any] = {}
    for name in args.sets.split(","):
        store = SETS[name]
        if not store.is_dir():
            raise SystemExit(f"{store}: missing (the shared data sets are not here)")
        view = work / name / "data"
        labelled = make_view(store, view, args.per_type, args.seed)
        print(f"{name}: labelled defects per type {labelled} (seed {args.seed}); view {view}")
        report[name] = {"labelled": labelled}
        for model, kind in (("default with labelled defects", "auto"), ("good-only", "anomaly")):
            if kind not in args.kinds.split(","):
                continue
            out, seconds = train(view, work / name / "models" / kind / "1", kind, args.seed,
                                 extra)
            figs = score_model(out, view)
            figs["train_seconds"] = round(seconds, 1)
            report[name][kind] = figs
            print_table(name, model, figs, seconds)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nmodels and views in {work}")


if __name__ == "__main__":
    main()
