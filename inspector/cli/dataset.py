"""`inspector dataset synth | export`: a synthetic data set, and reviewed inspections from the
database as a labeled training folder."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from inspector.cli.errors import fail
from inspector.cli.serve import settings_or_exit

dataset_app = typer.Typer(help="Make and export data sets.", no_args_is_help=True)

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (a date or a date and time; no zone = UTC) or an age like `7d`, `12h`, `30m`,
    `2w` (that long before now)."""
    text = value.strip()
    rel = _RELATIVE.match(text)
    if rel:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[rel[2]]: float(rel[1])})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a time: use 2026-11-01, 2026-11-01T08:00 or an "
                         "age such as 7d, 12h") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _time_opt(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise fail(f"{flag}: {exc}") from exc


def synth_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (MVTec layout).")],
    n_train: Annotated[int, typer.Option(help="Good training images.")] = 60,
    n_test_good: Annotated[int, typer.Option(help="Good test images.")] = 20,
    n_test_defect: Annotated[int, typer.Option(help="Test images per defect type.")] = 10,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 160,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    gray: Annotated[bool, typer.Option(help="Grayscale surfaces.")] = False,
) -> None:
    """Write a small synthetic data set (scratches, spots, cracks, with masks).

    Example: inspector dataset synth --out /tmp/synth
    """
    from inspector.synth import SynthConfig, write_dataset

    counts = write_dataset(out, SynthConfig(n_train, n_test_good, n_test_defect, size, seed, gray))
    for folder, n in counts.items():
        print(f"{n:5d}  {out / folder}")


def export_cmd(
    since: Annotated[str, typer.Option(
        help="Inspections from this time: 2026-11-01, 2026-11-01T08:00Z, or an age: 7d, 12h.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (new or empty).")],
    until: Annotated[str | None, typer.Option(help="Up to this time (exclusive).")] = None,
    station: Annotated[str | None, typer.Option(help="Only this station.")] = None,
    sample_passes: Annotated[int, typer.Option(
        help="Unreviewed passes (with a stored frame) to add to good/.", min=0)] = 100,
    seed: Annotated[int, typer.Option(help="Seed for sampling passes.")] = 0,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Settings file (as for `inspector serve`).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The server's state folder (database, artifacts).")] = None,
    database_url: Annotated[str | None, typer.Option(help="Database URL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary.")] = False,
) -> None:
    """Write reviewed inspections as a labeled data set for `inspector train`.

    good/ gets overturned fails, passes reviewed as good and a sample of unreviewed passes;
    <defect_type>/ gets confirmed defects. manifest.json and manifest.csv list every file with
    its inspection id, label, defect type, reviewer, times, station and source artifact. Reads
    the database and artifacts the server uses (same settings: INSPECTOR_*, --config); in a
    fleet (PostgreSQL) flagged frames judged by other nodes come from the database.

    Examples:

        inspector dataset export --since 7d --out exports/week-47

        inspector dataset export --since 2026-11-01 --until 2026-11-15 --station press-2 \\
            --sample-passes 300 --out exports/press-2 && \\
        inspector train --data exports/press-2 --out models/press/3
    """
    from rich.console import Console
    from rich.progress import Progress

    from inspector.store.artifacts import ArtifactStore
    from inspector.store.db import Database
    from inspector.store.export import ExportQuery, plan_export, write_export

    start, end = _time_opt(since, "--since"), _time_opt(until, "--until")
    if start is None:
        raise fail("--since is required")
    settings = settings_or_exit(config, data_dir=data_dir, database_url=database_url)
    if not settings.database_url and not (settings.data_dir / "inspector.db").is_file():
        raise fail(f"no database at {settings.data_dir / 'inspector.db'}: pass the server's "
                   "--data-dir, --database-url or --config")
    db = Database(settings.resolved_database_url)
    db.migrate()
    query = ExportQuery(since=start, until=end, station=station, sample_passes=sample_passes,
                        seed=seed)
    planned, _ = plan_export(db, query)
    if not planned:
        raise fail("nothing to export: no reviewed inspections with a stored frame and no "
                   "stored passes in that time window (review flagged parts first, or widen "
                   "--since)", code=1)
    try:
        with Progress(transient=True, disable=as_json) as bar:
            task = bar.add_task("copying frames", total=len(planned))
            result = write_export(db, ArtifactStore(settings.artifacts_dir), query, out,
                                  progress=lambda n: bar.advance(task, n),
                                  shared=settings.shares_storage)
    except FileExistsError as exc:
        raise fail(f"{out} exists and is not empty: choose a new folder") from exc
    finally:
        db.dispose()
    summary: dict[str, Any] = {"out": str(result.out), "images": len(result.items),
                               "counts": result.counts, "missing_frames": len(result.missing)}
    if as_json:
        print(json.dumps(summary))
        return
    console = Console()
    for folder, n in result.counts.items():
        console.print(f"{n:6d}  {out / folder}", highlight=False, markup=False)
    console.print(f"{len(result.items)} images, manifest in {out / 'manifest.json'}",
                  highlight=False, markup=False)
    if result.missing:
        console.print(f"{len(result.missing)} chosen inspection(s) had no stored frame "
                      "(retention removed it, or it was a pass not sampled)", highlight=False)
    if result.counts.get("good", 0) < 10:
        console.print("note: fewer than 10 good images; an anomaly model needs more "
                      "(raise --sample-passes or INSPECTOR_SAMPLE_PASSES on the server)",
                      highlight=False)
