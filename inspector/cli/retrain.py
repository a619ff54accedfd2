"""`inspector retrain`: reviews back into a new model version, judged against the active one,
shipped as the station's shadow only when it is better.

Everything goes through the server's HTTP API with one admin key, so it runs from any
machine that reaches the server; training runs in a child process (`inspector train`, the
[train] extra), so this process never imports torch. What a run made stays in its work
folder: the active package (`active/`), the reviewed frames (`reviewed/`, `split.json`), the
training folder (`train/`), the new package (`models/NAME/VERSION/`) and `comparison.json`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from inspector.cli.dataset import parse_time
from inspector.cli.errors import fail
from inspector.core.names import NAME_RE, utcnow

if TYPE_CHECKING:
    from inspector.core.datasets import Sample
    from inspector.core.pipeline import Detector
    from inspector.retrain.client import ServerClient
    from inspector.retrain.compare import Decision

#: Exit code when the new model is not better by the rule (nothing is uploaded).
NOT_BETTER = 3


def _check_args(station: str, key: str | None, holdout: float, min_gain: float,
                base_data: Path | None, work: Path) -> str:
    """Refuse bad arguments before any work; returns the key."""
    from inspector.core.datasets import scan
    from inspector.core.errors import InspectorError

    if not NAME_RE.match(station):
        raise fail(f"--station {station!r} is not a station name (letters, digits, . _ -)")
    if not key:
        raise fail("no admin key: pass --key or set INSPECTOR_ADMIN_KEY (make one with "
                   "`inspector keys create --role admin` on the server)")
    if not 0.05 <= holdout <= 0.9:
        raise fail(f"--holdout {holdout} is the share of reviewed frames held out: give a "
                   "value from 0.05 to 0.9, e.g. 0.3")
    if not 0.0 <= min_gain < 1.0:
        raise fail(f"--min-gain {min_gain} is a share of frames: give a value from 0 to below "
                   "1, e.g. 0.02")
    if base_data is not None:
        try:
            scan(base_data)
        except InspectorError as exc:
            raise fail(f"--base-data: {exc}") from exc
    if work.exists() and (not work.is_dir() or any(work.iterdir())):
        raise fail(f"--work {work} exists and is not empty: choose a new folder")
    for module in ("torch", "training"):
        if importlib.util.find_spec(module) is None:
            raise fail(f"retraining trains a model, which needs {module!r}",
                       hint="install the training extra: pip install -e '.[train]'")
    return key


def _next_version(active: str, loaded: list[str]) -> str:
    """One above the highest numeric version the server has of this model, else a time."""
    numbers = [int(v) for v in [active, *loaded] if v.isdigit()]
    return str(max(numbers) + 1) if numbers else utcnow().strftime("%Y%m%d%H%M%S")


def _trained_at(card_training: datetime | None, calibrated: datetime | None,
                since: str | None) -> datetime:
    if since is not None:
        try:
            return parse_time(since)
        except ValueError as exc:
            raise fail(f"--since: {exc}") from exc
    found = card_training or calibrated
    if found is None:
        raise fail("the active model's card does not say when it was trained",
                   hint="pass --since with the time its training data ends, e.g. 2026-11-01")
    return found


def _train(data: Path, out: Path, kind: str | None, sets: list[str]) -> None:
    """`inspector train` in a child process (torch stays out of this one)."""
    cmd = [sys.executable, "-c", "from inspector.cli import main; main()", "train",
           "--data", str(data), "--out", str(out)]
    cmd += ["--kind", kind] if kind else []
    for s in sets:
        cmd += ["--set", s]
    if subprocess.run(cmd, check=False).returncode != 0:
        raise fail("training the new version failed (see above)", code=1)


def retrain_cmd(
    station: Annotated[str, typer.Option(help="The station whose reviews to train on.")],
    url: Annotated[str, typer.Option(
        envvar="INSPECTOR_URL", help="The server (env INSPECTOR_URL).")] = "http://127.0.0.1:8000",
    key: Annotated[str | None, typer.Option(
        envvar="INSPECTOR_ADMIN_KEY", show_default=False,
        help="An admin API key (env INSPECTOR_ADMIN_KEY).")] = None,
    base_data: Annotated[Path | None, typer.Option(
        "--base-data", help="The active model's own training data (MVTec or labelled), "
        "added to training: reviewed goods are usually few.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Reviewed frames inspected from this time (2026-11-01, or an age: 30d); "
        "default: when the active model was trained (its card).")] = None,
    holdout: Annotated[float, typer.Option(
        help="Share of the reviewed frames held out to compare the models (stratified).")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
    kind: Annotated[str | None, typer.Option(
        help="Model kind for `inspector train` (default: its own).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Training knob key=value for `inspector train`, repeatable.")] = None,
    version: Annotated[str | None, typer.Option(
        help="Version of the new package (default: one above the server's highest).")] = None,
    min_gain: Annotated[float, typer.Option(
        help="How much lower the new model's escape or false-reject rate must be (0.02 = "
        "2 points); 0: any improvement.")] = 0.0,
    min_reviewed: Annotated[int, typer.Option(
        min=2, help="Fewest reviewed frames to retrain on.")] = 10,
    work: Annotated[Path | None, typer.Option(
        help="Folder for this run's data and packages (new or empty; default "
        "retrain-STATION-TIME/).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Train and compare, upload nothing.")] = False,
) -> None:
    """Train a new version on the station's reviewed frames and deploy it as the station's
    shadow when it beats the active model on held-out reviewed frames.

    Steps: the station's active model and its package (GET /v1/stations/S/model, GET
    /v1/models/NAME/VERSION/package); the frames reviewed since that model was trained (GET
    /v1/inspections, /v1/reviews and each frame's image) into good/ and <defect_type>/; a
    stratified held-out split of them; `inspector train` on the rest plus --base-data; both
    models on the held-out frames (escapes and false rejects at each card's threshold,
    escape at FRR 1/2/5 %, image AUROC); then, only when the new one is better, POST
    /v1/models and PUT /v1/stations/S/model with mode shadow. Promote it after watching the
    shadow report: POST /v1/stations/S/promote.

    Better means: no higher escape rate AND no higher false-reject rate than the active
    model, and one of them lower by more than --min-gain.

    Exit codes: 0 deployed as shadow (with --dry-run: would be), 3 not better (nothing
    uploaded), 2 bad arguments, key or station, 1 anything else that failed.

    Examples:

        INSPECTOR_ADMIN_KEY=... inspector retrain --station press-2 --base-data data/press

        inspector retrain --station press-2 --url http://edge-7:8000 --key ADMIN \\
            --base-data data/press --set image_size=320 --min-gain 0.02 --dry-run
    """
    work = work or Path(f"retrain-{station}-{utcnow().strftime('%Y%m%dT%H%M%S')}")
    admin_key = _check_args(station, key, holdout, min_gain, base_data, work)
    from inspector.retrain.client import RetrainError, ServerClient

    client = ServerClient(url, admin_key)
    try:
        code = _run(client, station, work, base_data, since, holdout, seed, kind, set_ or [],
                    version, min_gain, min_reviewed, dry_run)
    except RetrainError as exc:
        raise fail(exc, exc.exit_code) from exc
    finally:
        client.close()
    if code:
        raise typer.Exit(code)


def _run(client: ServerClient, station: str, work: Path, base_data: Path | None,
         since: str | None, holdout: float, seed: int, kind: str | None, sets: list[str],
         version: str | None, min_gain: float, min_reviewed: int, dry_run: bool) -> int:
    """The steps of `retrain_cmd`; returns the exit code."""
    from inspector.cli.inspect import load_detector
    from inspector.core.names import ModelRef
    from inspector.retrain import data
    from inspector.retrain.client import RetrainError

    active_ref = client.station_models(station).get("active")
    if not active_ref:
        raise RetrainError(f"station {station} has no active model",
                           hint=f"check the station name, or deploy one first: PUT "
                           f"/v1/stations/{station}/model", exit_code=2)
    active = ModelRef.parse(active_ref)
    work.mkdir(parents=True, exist_ok=True)
    print(f"[1/5] active model {active} at {station}: downloading its package")
    detector = load_detector(client.download_package(active.name, active.version,
                                                     work / "active"))
    card = detector.card
    start = _trained_at(card.training.created_at, card.threshold.calibrated_at, since)
    frames, missing = client.reviewed_frames(station, start)
    data.check_enough(frames, min_reviewed, start.isoformat(), missing)
    print(f"[2/5] {len(frames)} frames reviewed since {start.isoformat()}: downloading")
    reviewed = work / "reviewed"
    _, gone = data.write_reviewed(frames, client.frame, reviewed)
    if gone:
        data.check_enough([f for f in frames if f.inspection_id not in gone], min_reviewed,
                          start.isoformat(), missing + len(gone))
    split = data.split_reviewed(reviewed, holdout, seed)
    data.write_split(split, reviewed, work / "split.json")
    counts = data.training_folder(split, base_data, work / "train")
    new_ref = ModelRef(active.name, version or _next_version(
        active.version, client.loaded_versions(active.name)))
    package = work / "models" / new_ref.name / new_ref.version
    print(f"[3/5] training {new_ref} on {sum(counts.values())} images "
          f"({', '.join(f'{n} {c}' for c, n in sorted(counts.items()))}); "
          f"{len(split.held_out)} reviewed frames held out")
    _train(work / "train", package, kind, sets)
    print(f"[4/5] comparing {active} and {new_ref} on the held-out frames")
    decision = _compare(detector, load_detector(package), split.held_out, min_gain, work)
    if not decision.better:
        print(f"not better: {decision.reason}; nothing uploaded (package kept in {package})")
        return NOT_BETTER
    if dry_run:
        print(f"better: {decision.reason}. Dry run: nothing uploaded; {package} would go to "
              f"{station} as its shadow")
        return 0
    print(f"[5/5] better: {decision.reason}; uploading {new_ref} and deploying it as the "
          f"shadow of {station}")
    client.upload_package(package)
    client.deploy_shadow(station, str(new_ref))
    print(f"{new_ref} is the shadow model of {station}; compare it live with GET "
          f"/v1/stations/{station}/shadow-report, then POST /v1/stations/{station}/promote")
    return 0


def _compare(active: Detector, new: Detector, held_out: list[Sample], min_gain: float,
             work: Path) -> Decision:
    """Both models on the held-out frames: print the table, write comparison.json."""
    from inspector.core.errors import InspectorError
    from inspector.evaluation import evaluate
    from inspector.retrain import compare

    try:
        old_s, new_s = (compare.standing(d.card.ref, evaluate(d, held_out, batch=8),
                                         d.threshold) for d in (active, new))
    except InspectorError as exc:  # e.g. a model that answers NaN
        raise fail(exc, 1) from exc
    decision = compare.decide(old_s, new_s, min_gain)
    print("\n".join(compare.table(old_s, new_s)))
    (work / "comparison.json").write_text(
        json.dumps(compare.as_json(old_s, new_s, decision), indent=2) + "\n", encoding="utf-8")
    return decision
