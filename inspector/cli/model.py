"""`inspector train | evaluate | calibrate`: make a package and choose its threshold.

`train` hands over to the `training` package (the [train] extra, with torch); the others run
the exported ONNX model through inspector.core and need no torch.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from inspector.cli.errors import fail
from inspector.cli.inspect import load_detector
from inspector.cli.tradeoff import calibrate_rows, evaluate_rows, tradeoff_table
from inspector.core.card import write_card
from inspector.core.datasets import SPLIT_FILE, Dataset, Sample, samples_from_split, scan
from inspector.core.errors import InspectorError
from inspector.core.threshold import DEFAULT_TARGET_FRR, METHODS, choose_threshold

if TYPE_CHECKING:
    from inspector.core.pipeline import Detector
    from inspector.evaluation import EvalResult

ModelDir = Annotated[Path, typer.Argument(help="Model package folder (models/NAME/VERSION).")]
DataDir = Annotated[Path, typer.Option("--data", help="Data set folder (MVTec or labeled).")]


def _load(model_dir: Path, data: Path) -> tuple[Detector, Dataset]:
    detector = load_detector(model_dir)
    try:
        return detector, scan(data)
    except InspectorError as exc:
        raise fail(exc) from exc


def _score(
    detector: Detector, samples: list[Sample], what: str, batch: int, quiet: bool = False
) -> EvalResult:
    """Run `evaluate` with progress on stderr (a bar on a terminal, plain lines elsewhere)."""
    from inspector.evaluation import evaluate
    from inspector.progress import task

    try:
        if quiet:
            return evaluate(detector, samples, batch=batch)
        with task(what, len(samples)) as bar:
            return evaluate(detector, samples, batch=batch, progress=bar.advance)
    except InspectorError as exc:  # e.g. a model that answers NaN
        raise fail(exc) from exc


def evaluate_cmd(
    model_dir: ModelDir,
    data: DataDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    batch: Annotated[int, typer.Option(help="Batch size (1 gives per-frame latency).")] = 1,
    report: Annotated[bool, typer.Option(
        help="Write plots and metrics.json (see --report-dir).")] = True,
    report_dir: Annotated[Path | None, typer.Option(
        "--report-dir", help="Folder for the plots; default: the package's report/ when "
        "this is the data it was trained on, else report-<data folder name>/ beside it.")] = None,
) -> None:
    """Evaluate a package on the data set's test split, exactly as the server runs it.

    When the package was trained on this data folder, the test files are those its
    report/split.json held out (a classifier trains on part of test/<defect_type>), and the
    plots replace report/. On other data they go to <package>/report-<data folder name>/, so
    report/ keeps agreeing with the card.

    Example: inspector evaluate models/mtd/1 --data ../shared/data/mtd --json
    """
    detector, ds = _load(model_dir, data)
    samples = _held_out(detector, ds, "test", quiet=as_json) or ds.test
    if not samples:
        raise fail(f"{data}: no test images (expected test/good and test/<defect_type>)")
    result = _score(detector, samples, "evaluating", batch, quiet=as_json)
    metrics = result.metrics
    if report:
        out = report_dir or _report_folder(detector, ds)
        if out != detector.package.report_dir and report_dir is None:
            typer.echo(f"note: {data} is not the data this package was trained on "
                       f"({detector.card.training.data}): plots go to {out}, report/ is left "
                       "as the card describes it", err=True)
        try:
            from inspector.report import write_report

            write_report(detector, result, out)
        except ModuleNotFoundError as exc:
            typer.echo(
                f"note: report plots skipped ({exc.name} missing; install [train])", err=True
            )
    if as_json:
        print(json.dumps(metrics))
        return
    for key, value in metrics.items():
        if key != "operating_points":
            print(f"{key:>22}: {_shown(value)}")
    from inspector.evaluation import scores_by_type

    print("\noperating points (threshold set on these goods / defects):")
    rows = evaluate_rows(metrics["operating_points"], detector.threshold)
    y, s = result.labels, result.scores
    print("\n".join(tradeoff_table(s[~y], scores_by_type(result), rows)))


def _shown(value: object) -> str:
    """A metric for people: floats to 4 places, a per-type dict on one line."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_shown(v)}" for k, v in value.items()) or "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def trained_on(detector: Detector, ds: Dataset) -> bool:
    """Whether `ds` is the data the package was trained on (its card's training data or its
    split file's root); a package that records neither counts as such (nothing to
    contradict)."""
    roots = [detector.card.training.data]
    split = detector.package.report_dir / SPLIT_FILE
    if split.is_file():
        with contextlib.suppress(OSError, UnicodeDecodeError, ValueError, AttributeError):
            roots.append(json.loads(split.read_text(encoding="utf-8")).get("root"))
    known = [Path(r).resolve() for r in roots if isinstance(r, str) and r]
    return not known or ds.root.resolve() in known


def _report_folder(detector: Detector, ds: Dataset) -> Path:
    """report/ for the training data, else report-<data folder name>/ beside it."""
    if trained_on(detector, ds):
        return detector.package.report_dir
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", ds.root.resolve().name).strip("-.") or "data"
    return detector.package.report_dir.with_name(f"report-{name}")


def calibrate_cmd(
    model_dir: ModelDir,
    data: DataDir,
    target_frr: Annotated[float | None, typer.Option(
        help="Allowed share of good parts judged fail, e.g. 0.02 (default method: "
        f"{DEFAULT_TARGET_FRR} when the data has no defects).")] = None,
    target_escape: Annotated[float | None, typer.Option(
        help="Allowed share of defects judged pass, e.g. 0.01 (needs defects).")] = None,
    method: Annotated[
        str, typer.Option(help="auto, target_frr, best_f1 or target_escape.")
    ] = "auto",
    split: Annotated[
        str,
        typer.Option(
            help="auto, validation or test (auto: the package's own validation files)."
        ),
    ] = "auto",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the trade-off table and the threshold, write nothing.")] = False,
) -> None:
    """Choose the threshold on data and rewrite only card.json (the ONNX file is untouched).

    First prints the trade-off table on this data: for a spread of false-reject (FRR) and
    escape targets, the threshold, its FRR, escape rate and each defect type's escape rate.
    Pick the operating point by either rate: --target-frr 0.02 (at most 2% of good parts
    rejected) or --target-escape 0.01 (at most 1% of defects passed). Without either, auto
    picks best F1 when the data has defects, else target_frr 0.01 on the good images.

    A signed package must be signed again afterwards (`inspector models sign`): its
    signature covers the card.

    Examples:

        inspector calibrate models/mtd/1 --data /data/mtd_val --target-frr 0.02

        inspector calibrate models/mtd/1 --data /data/mtd_val --target-escape 0.01 --dry-run
    """
    if target_frr is not None and target_escape is not None:
        raise fail("give one target: --target-frr or --target-escape")
    for name, rate in (("--target-frr", target_frr), ("--target-escape", target_escape)):
        if rate is not None and not 0.0 <= rate < 1.0:
            raise fail(f"{name} is a share of parts: give a value from 0 to below 1, e.g. 0.01")
    if method not in METHODS:
        raise fail(f"unknown method {method!r}: use {', '.join(METHODS)}")
    if method == "auto" and target_escape is not None:
        method = "target_escape"  # asked for by name: fail without defects, never fall back
    if method == "auto" and target_frr is not None:
        method = "target_frr"
    detector, ds = _load(model_dir, data)
    samples = _pick_split(detector, ds, split)
    if not samples:
        raise fail(f"{data}: no images to calibrate on")
    result = _score(detector, samples, "scoring", batch=8)
    y, s = result.labels, result.scores
    try:
        spec = choose_threshold(
            s[~y], s[y], method=method, target_escape=target_escape, data=f"{data} ({split})",
            target_frr=DEFAULT_TARGET_FRR if target_frr is None else target_frr,
        )
    except InspectorError as exc:
        raise fail(exc) from exc
    from inspector.evaluation import scores_by_type

    card = detector.card
    rows = [*calibrate_rows(s[~y], s[y]), ("card threshold", card.threshold.value),
            (f"-> {spec.method}", spec.value)]
    print("\n".join(tradeoff_table(s[~y], scores_by_type(result), rows)))
    if dry_run:
        print(f"dry run: card.json keeps threshold {card.threshold.value:.6g}; "
              f"{spec.method} would set {spec.value:.6g}")
        return
    write_card(card.model_copy(update={"threshold": spec}), detector.package.card_path)
    _warn_signature_stale(detector.package.root)
    print(f"threshold {card.threshold.value:.6g} -> {spec.value:.6g} ({spec.method}) "
          f"written to {detector.package.card_path}")


def _warn_signature_stale(root: Path) -> None:
    """A new threshold changes card.json, so the package's signature no longer matches it:
    servers refuse the package until someone who holds a trusted key signs it again."""
    from inspector.core.signing import SIGNATURE_FILE

    if (root / SIGNATURE_FILE).is_file():
        typer.echo(f"warning: {root / SIGNATURE_FILE} no longer matches the new card.json: "
                   f"servers refuse this package until it is re-signed: inspector models sign "
                   f"{root} --key KEY.pem", err=True)


def _held_out(detector: Detector, ds: Dataset, which: str, quiet: bool = False) -> list[Sample]:
    """The package's own split of this data folder (report/split.json), or []."""
    samples = samples_from_split(ds, detector.package.report_dir / SPLIT_FILE, which) or []
    if samples and not quiet:
        typer.echo(f"using the {len(samples)} {which} files of report/{SPLIT_FILE}", err=True)
    return samples


def _pick_split(detector: Detector, ds: Dataset, split: str) -> list[Sample]:
    """auto: the package's validation files when it was trained on this folder, else the
    data set's validation split, else its test split (with a warning)."""
    if split not in ("auto", "validation", "test"):
        raise fail(f"unknown split {split!r}: use auto, validation or test")
    if split in ("auto", "validation"):
        samples = _held_out(detector, ds, "val") or list(ds.validation)
        if samples or split == "validation":
            return samples
        typer.echo("note: no validation split here; calibrating on the test split", err=True)
    return _held_out(detector, ds, "test") or list(ds.test)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`key=value` pairs as text: training.config parses and checks each knob by its type."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise fail(f"--set expects key=value (or `--set help`), got {pair!r}")
        out[key.strip()] = raw
    return out


def train_cmd(
    data: DataDir,
    out: Annotated[
        Path, typer.Option("--out", help="Package folder to write: models/NAME/VERSION.")
    ],
    kind: Annotated[
        str | None, typer.Option(
            help="anomaly (good images only), classifier, or hybrid (PatchCore + a head "
            "learnt from a few labelled defects); default: hybrid when there are labelled "
            "defects to train on (train/<defect_type>/, --labelled, a labeled folder), "
            "else anomaly.")
    ] = None,
    labelled: Annotated[
        Path | None, typer.Option(
            "--labelled", help="Folder of reviewed images to train on: <defect_type>/ "
            "folders (and optionally good/); files also in the data's test split leave it.")
    ] = None,
    backbone: Annotated[
        str | None, typer.Option(help="Feature backbone; default: the offline EfficientNet-Lite0.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default 0): the same seed and data give "
                                 "the same package on any machine load.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Model knob key=value, repeatable (e.g. image_size=320, layers=[8,11,15]); "
            "`--set help` lists every knob with its default and meaning.",
        ),
    ] = None,
) -> None:
    """Train a model package from a folder of images (needs the training extra with torch).

    Examples:

        inspector train --data ../shared/data/mtd --out models/mtd/1

        inspector train --data reviewed/ --out models/tiles/4 --kind classifier

        inspector train --data ../shared/data/mtd --labelled reviewed/ --out models/mtd/2

        inspector train --data parts/ --out models/parts/2 --set image_size=320 --set coreset=0.05

    The printed summary gives the wall-clock seconds of each phase (read, fit, export,
    parity, calibrate, package, evaluate) and the total; the card keeps them in
    training.params.timings_s.
    """
    import importlib

    # By name: the [train] extra (torch) may be absent, and the server package's type check
    # does not follow into training/.
    try:
        training = importlib.import_module("training.cli")
    except ModuleNotFoundError as exc:
        raise fail(
            f"training needs the [train] extra ({exc.name} is missing): pip install -e '.[train]'"
        ) from exc
    if "help" in (set_ or []):
        print("\n".join(training.knob_help()))
        return
    knobs: dict[str, object] = {"kind": kind, "backbone": backbone, "seed": seed,
                                "labelled": str(labelled) if labelled else None}
    try:
        result = training.train_command(
            data=data, out=out, **knobs, **parse_overrides(set_ or [])
        )
    except InspectorError as exc:
        raise fail(exc) from exc
    for line in result.summary():
        print(line)
