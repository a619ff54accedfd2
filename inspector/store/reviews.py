"""Review queries: labels for scripts (`GET /v1/reviews`), the review queue, defect types.

Every review is kept (`reviews` rows are never updated); the inspection's `review_state`
holds the latest label. "Current" reviews are the newest one per inspection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Select, func, select

from inspector.store.db import Database
from inspector.store.inspections import where_station_time
from inspector.store.models import Inspection, Review

#: Highest queue page asked for: beyond it (or at 0 and below) the page is clamped, so a
#: hand-typed `?page=99999999999999999999` shows an empty page instead of overflowing OFFSET.
MAX_PAGE = 1_000_000
QueueState = Literal["awaiting", "reviewed", "all"]
QueueVerdict = Literal["fail", "pass", "any"]


@dataclass(frozen=True)
class ReviewQuery:
    """Filters for listing reviews; newest first, keyset-paginated by `before` (a review id)."""

    since: datetime | None = None
    until: datetime | None = None
    station: str | None = None
    label: Literal["defect", "good"] | None = None
    #: False: only the current (newest) review of each inspection; True: every review.
    history: bool = False
    before: int | None = None
    limit: int = 100


@dataclass(frozen=True)
class ReviewRow:
    """A review with the facts of the inspection it labels."""

    id: int
    inspection_id: str
    label: str
    defect_type: str | None
    note: str | None
    reviewer: str
    created_at: datetime
    station: str
    part_id: str | None
    verdict: str
    score: float
    model_name: str
    model_version: str


def _current_ids() -> Select[int]:
    return select(func.max(Review.id)).group_by(Review.inspection_id)


def list_reviews(db: Database, q: ReviewQuery) -> tuple[list[ReviewRow], int | None]:
    """A page of reviews and the cursor for the next (older) page; None at the end."""
    stmt = select(Review, Inspection).join(Inspection, Inspection.id == Review.inspection_id)
    if not q.history:
        stmt = stmt.where(Review.id.in_(_current_ids()))
    if q.since:
        stmt = stmt.where(Review.created_at >= q.since)
    if q.until:
        stmt = stmt.where(Review.created_at < q.until)
    if q.station:
        stmt = stmt.where(Inspection.station == q.station)
    if q.label:
        stmt = stmt.where(Review.label == q.label)
    if q.before is not None:
        stmt = stmt.where(Review.id < q.before)
    stmt = stmt.order_by(Review.id.desc()).limit(q.limit + 1)
    with db.session() as s:
        pairs = list(s.execute(stmt))
    rows = [
        ReviewRow(r.id, r.inspection_id, r.label, r.defect_type, r.note, r.reviewer,
                  r.created_at, i.station, i.part_id, i.verdict, i.score, i.model_name,
                  i.model_version)
        for r, i in pairs[: q.limit]
    ]
    more = len(pairs) > q.limit
    return rows, (rows[-1].id if more and rows else None)


def defect_types(db: Database, limit: int = 20) -> list[str]:
    """Defect types reviewers have used, most used first (current reviews only)."""
    stmt = (
        select(Review.defect_type, func.count().label("n"))
        .where(Review.defect_type.is_not(None), Review.id.in_(_current_ids()))
        .group_by(Review.defect_type)
        .order_by(func.count().desc(), Review.defect_type)
        .limit(limit)
    )
    with db.session() as s:
        return [t for t, _ in s.execute(stmt) if t]


@dataclass(frozen=True)
class QueueQuery:
    """The review queue: by default failed parts not reviewed yet, newest first."""

    station: str | None = None
    verdict: QueueVerdict = "fail"
    state: QueueState = "awaiting"
    since: datetime | None = None
    until: datetime | None = None


def _queue_stmt(q: QueueQuery) -> Select[Inspection]:
    # Only parts with a stored frame can be reviewed: every fail, and the sampled passes.
    stmt = select(Inspection).where(Inspection.image_key.is_not(None))
    if q.verdict != "any":
        stmt = stmt.where(Inspection.verdict == q.verdict)
    if q.state == "awaiting":
        stmt = stmt.where(Inspection.review_state == "unreviewed")
    elif q.state == "reviewed":
        stmt = stmt.where(Inspection.review_state != "unreviewed")
    return where_station_time(stmt, q.station, q.since, q.until)


def queue_page(db: Database, q: QueueQuery, page: int, per_page: int
               ) -> tuple[list[Inspection], int]:
    """One page (1-based, clamped to 1..MAX_PAGE) of the queue and the total number of parts
    in it."""
    stmt = _queue_stmt(q)
    page = min(max(page, 1), MAX_PAGE)
    with db.session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = list(s.scalars(stmt.order_by(Inspection.id.desc())
                              .offset((page - 1) * per_page).limit(per_page)))
    return rows, int(total)


def next_in_queue(db: Database, q: QueueQuery, after: str) -> str | None:
    """The id of the part that follows `after` in the queue (the next older one), if any."""
    stmt = _queue_stmt(q).where(Inspection.id < after).order_by(Inspection.id.desc()).limit(1)
    with db.session() as s:
        row = s.scalars(stmt).first()
        return row.id if row else None


def queue_stations(db: Database) -> list[str]:
    """Every station that has recorded an inspection, by name."""
    with db.session() as s:
        return list(s.scalars(select(Inspection.station).distinct().order_by(Inspection.station)))
