"""Shadow results: write them in batches, read them back (with review labels) for reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import desc, select

from inspector.core.names import ModelRef
from inspector.store.db import Database
from inspector.store.models import Inspection, Review, ShadowResult


@dataclass(frozen=True)
class NewShadowResult:
    """One frame judged by a station's shadow model, with the active answer beside it."""

    inspection_id: str
    station: str
    created_at: datetime
    active_name: str
    active_version: str
    active_score: float
    active_verdict: str
    shadow_name: str
    shadow_version: str
    shadow_score: float
    shadow_threshold: float
    shadow_verdict: str
    shadow_label: str | None
    shadow_ms: float


def record_shadow_batch(db: Database, items: list[NewShadowResult]) -> None:
    """Insert shadow results in one transaction (group commit)."""
    with db.session() as s:
        s.add_all(ShadowResult(**asdict(item)) for item in items)


@dataclass(frozen=True)
class ShadowRow:
    """What a report needs from one shadow result: both answers and the reviewed label."""

    active_ref: str
    active_score: float
    active_verdict: str
    shadow_score: float
    shadow_verdict: str
    #: unreviewed | defect | good (the inspection's latest review).
    review_state: str
    #: The latest review's defect type (None: unreviewed, good or no type given).
    defect_type: str | None = None


def shadow_rows(
    db: Database,
    station: str,
    shadow_name: str,
    shadow_version: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200_000,
) -> list[ShadowRow]:
    """The newest `limit` results of one shadow model at one station, oldest first."""
    latest_type = (select(Review.defect_type).where(Review.inspection_id == Inspection.id)
                   .order_by(desc(Review.id)).limit(1).scalar_subquery())
    stmt = (
        select(ShadowResult.active_name, ShadowResult.active_version, ShadowResult.active_score,
               ShadowResult.active_verdict, ShadowResult.shadow_score,
               ShadowResult.shadow_verdict, Inspection.review_state, latest_type)
        .join(Inspection, Inspection.id == ShadowResult.inspection_id)
        .where(ShadowResult.station == station, ShadowResult.shadow_name == shadow_name,
               ShadowResult.shadow_version == shadow_version)
    )
    if since is not None:
        stmt = stmt.where(ShadowResult.created_at >= since)
    if until is not None:
        stmt = stmt.where(ShadowResult.created_at < until)
    stmt = stmt.order_by(desc(ShadowResult.id)).limit(limit)
    with db.session() as s:
        rows = list(s.execute(stmt))
    return [ShadowRow(str(ModelRef(r[0], r[1])), r[2], r[3], r[4], r[5], r[6],
                      r[7] if r[6] == "defect" else None)
            for r in reversed(rows)]


def latest_shadow_model(db: Database, station: str) -> ModelRef | None:
    """The the shadow model that last recorded a result at `station`."""
    stmt = (
        select(ShadowResult.shadow_name, ShadowResult.shadow_version)
        .where(ShadowResult.station == station)
        .order_by(desc(ShadowResult.id))
        .limit(1)
    )
    with db.session() as s:
        row = s.execute(stmt).first()
    return ModelRef(row[0], row[1]) if row else None
