"""Reviewed inspections -> a labeled training folder: `good/`, `<defect_type>/`, manifests.

What goes where, by each inspection's latest review:
- reviewed good (an overturned fail, or a pass a reviewer looked at) -> `good/`;
- reviewed defect (a confirmed fail, or an escape a reviewer caught) -> `<defect_type>/`
  (`defect/` when no type was given or the stored type is not a plain folder name);
- plus up to `sample_passes` unreviewed passes whose frame was stored -> `good/`.
Unreviewed fails are left out: nobody knows yet what they are.

Files are the stored frame bytes, named `<inspection id>.<ext>`: folder and file names come
from validated values and server-made ids, never from what a user typed. The export is written
to a hidden sibling folder and renamed into place, so a crash never leaves half an export.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import ColumnElement, func, select

from inspector.core.names import DEFECT_TYPE_RE, ModelRef, utcnow
from inspector.store import artifact_blobs
from inspector.store.artifacts import ArtifactStore
from inspector.store.db import Database
from inspector.store.models import Inspection, Review

GOOD = "good"
UNTYPED = "defect"
#: Cell starts a spreadsheet reads as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MANIFEST_FIELDS = ("inspection_id", "label", "defect_type", "file", "reviewer", "reviewed_at",
                   "inspected_at", "station", "part_id", "verdict", "score", "model", "source",
                   "source_file")


@dataclass(frozen=True)
class ExportQuery:
    """Which inspections to export: by inspection time [since, until) and station."""

    since: datetime
    until: datetime | None = None
    station: str | None = None
    #: Unreviewed passes (with a stored frame) to add to good/, sampled with `seed`.
    sample_passes: int = 100
    seed: int = 0


@dataclass(frozen=True)
class ExportItem:
    """One exported frame: a manifest row."""

    inspection_id: str
    label: str
    defect_type: str | None
    file: str
    reviewer: str | None
    reviewed_at: str | None
    inspected_at: str
    station: str
    part_id: str | None
    verdict: str
    score: float
    model: str
    #: review | sampled_pass
    source: str
    #: The artifact the bytes were copied from (relative to the artifact folder).
    source_file: str


@dataclass(frozen=True)
class ExportResult:
    out: Path
    items: list[ExportItem]
    counts: dict[str, int]
    #: Inspections chosen whose frame was no longer stored (retention) or never stored.
    missing: list[str] = field(default_factory=list)


def csv_cell(value: object) -> object:
    """A manifest cell safe to open in a spreadsheet: text that would start a formula
    (`=`, `+`, `-`, `@`, tab, CR) gets a leading `'`, as OWASP advises. Numbers stay numbers
    (a negative score is a number, not a formula)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def folder_for(label: str, defect_type: str | None) -> str:
    """The class folder of a review: good, the defect type, or `defect`."""
    if label == GOOD:
        return GOOD
    if defect_type and DEFECT_TYPE_RE.match(defect_type) and defect_type != GOOD:
        return defect_type
    return UNTYPED


def _reviewed(db: Database, q: ExportQuery) -> list[tuple[Inspection, Review]]:
    latest = (select(func.max(Review.id).label("rid"))
              .group_by(Review.inspection_id).subquery())
    stmt = (select(Inspection, Review)
            .join(Review, Review.inspection_id == Inspection.id)
            .join(latest, latest.c.rid == Review.id)
            .where(*_window(q)).order_by(Inspection.id))
    with db.session() as s:
        return [(i, r) for i, r in s.execute(stmt)]


def _window(q: ExportQuery) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = [Inspection.created_at >= q.since]
    if q.until is not None:
        cond.append(Inspection.created_at < q.until)
    if q.station:
        cond.append(Inspection.station == q.station)
    return cond


def _sampled_passes(db: Database, q: ExportQuery) -> list[Inspection]:
    if q.sample_passes <= 0:
        return []
    stmt = (select(Inspection)
            .where(*_window(q), Inspection.verdict == "pass",
                   Inspection.review_state == "unreviewed", Inspection.image_key.is_not(None))
            .order_by(Inspection.id))
    with db.session() as s:
        rows = list(s.scalars(stmt))
    if len(rows) > q.sample_passes:
        rows = sorted(random.Random(q.seed).sample(rows, q.sample_passes), key=lambda r: r.id)
    return rows


def _item(row: Inspection, key: str, label: str, defect_type: str | None, folder: str,
          review: Review | None) -> ExportItem:
    ext = key.rsplit(".", 1)[-1]
    return ExportItem(
        inspection_id=row.id, label=label, defect_type=defect_type,
        file=f"{folder}/{row.id}.{ext}", reviewer=review.reviewer if review else None,
        reviewed_at=review.created_at.isoformat() if review else None,
        inspected_at=row.created_at.isoformat(), station=row.station, part_id=row.part_id,
        verdict=row.verdict, score=row.score,
        model=str(ModelRef(row.model_name, row.model_version)),
        source="review" if review else "sampled_pass", source_file=key,
    )


def plan_export(db: Database, q: ExportQuery) -> tuple[list[ExportItem], list[str]]:
    """The items an export would write, and the ids chosen but without a stored frame."""
    items: list[ExportItem] = []
    missing: list[str] = []
    for row, review in _reviewed(db, q):
        if row.image_key is None:
            missing.append(row.id)
            continue
        folder = folder_for(review.label, review.defect_type)
        defect_type = None if review.label == GOOD else folder
        items.append(_item(row, row.image_key, review.label, defect_type, folder, review))
    items += [_item(row, row.image_key, GOOD, None, GOOD, None)
              for row in _sampled_passes(db, q) if row.image_key is not None]
    return items, missing


def write_export(
    db: Database,
    artifacts: ArtifactStore,
    q: ExportQuery,
    out: Path,
    progress: Callable[[int], None] | None = None,
    shared: bool = False,
) -> ExportResult:
    """Write the export to `out` (which must not exist or be empty). Raises FileExistsError
    for a non-empty `out`. With `shared` (fleet storage), a frame not on this machine's disk
    comes from its copy in the database (flagged frames of every node)."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(out)
    # A link to an empty folder (on another volume, say) is written through: the export is
    # staged beside the link's target and renamed into place there.
    dest = out.resolve() if out.is_symlink() else out
    planned, missing = plan_export(db, q)
    tmp = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    items: list[ExportItem] = []
    try:
        for item in planned:
            src = artifacts.path(item.source_file)  # refuses anything not server-made
            data = None
            if not src.is_file() and shared:
                data = artifact_blobs.read(db, item.source_file)
            if not src.is_file() and data is None:
                missing.append(item.inspection_id)
                continue
            target = tmp / item.file
            target.parent.mkdir(exist_ok=True)
            if data is None:
                shutil.copyfile(src, target)
            else:
                target.write_bytes(data)
            items.append(item)
            if progress is not None:
                progress(1)
        counts = dict(sorted(Counter(i.file.split("/", 1)[0] for i in items).items()))
        _write_manifests(tmp, q, items, counts, missing)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out, items, counts, missing)


def _write_manifests(root: Path, q: ExportQuery, items: list[ExportItem],
                     counts: dict[str, int], missing: list[str]) -> None:
    summary = {
        "created_at": utcnow().isoformat(),
        "query": {"since": q.since.isoformat(), "until": q.until.isoformat() if q.until else None,
                  "station": q.station, "sample_passes": q.sample_passes, "seed": q.seed},
        "layout": "labeled: good/ and one folder per defect type",
        "counts": counts,
        "missing_frames": missing,
        "items": [asdict(i) for i in items],
    }
    (root / "manifest.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in asdict(i).items()} for i in items)
