"""Inspection records: write verdicts (with their outbox rows) in one transaction, query, review."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from sqlalchemy import Select, Table, insert, select, update

from inspector.core.names import utcnow
from inspector.store.db import Database, database_unavailable
from inspector.store.models import Inspection, OutboxEvent, Review
from inspector.store.outbox import OutboxMessage, PendingEvent

ReviewLabel = Literal["defect", "good"]
ReviewFilter = Literal["unreviewed", "reviewed", "defect", "good"]

_INSPECTIONS = cast(Table, Inspection.__table__)
_OUTBOX = cast(Table, OutboxEvent.__table__)


def new_id() -> str:
    """A time-ordered id: 12 hex digits of milliseconds since the epoch + 20 random hex digits."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


@dataclass(frozen=True)
class NewInspection:
    """Everything recorded about one verdict."""

    id: str
    created_at: datetime
    node: str
    line: str
    station: str
    part_id: str | None
    model_name: str
    model_version: str
    score: float
    threshold: float
    verdict: str
    label: str | None
    frame_width: int
    frame_height: int
    queue_ms: float
    decode_ms: float
    inference_ms: float
    total_ms: float
    image_key: str | None = None
    heatmap_key: str | None = None
    artifact_bytes: int = 0
    #: The client's Idempotency-Key, unique per station (None: none sent).
    request_key: str | None = None


#: Builds the outbox message of a verdict (inspector.publish.messages.verdict_message).
MessageBuilder = Callable[[NewInspection], OutboxMessage]


def record_batch(
    db: Database, items: list[NewInspection], destinations: list[str],
    message: MessageBuilder | None = None,
) -> dict[str, list[PendingEvent]]:
    """Insert inspections and one outbox row per destination each, in a single transaction;
    `message` builds each row's topic and payload (needed when there are destinations).

    One commit for the whole batch (group commit): every verdict in it is durable when this
    returns. Returns the new outbox rows by destination, ids included, so the publishers can
    send them straight away instead of reading them back. Core inserts (executemany), not ORM
    objects: this runs for every verdict the server answers.
    """
    if destinations and message is None:
        raise ValueError("record_batch needs a message builder to write outbox rows")
    now = utcnow()
    pending: dict[str, list[PendingEvent]] = {d: [] for d in destinations}
    if not items:
        return pending
    with db.session() as s:
        conn = s.connection()
        conn.execute(insert(_INSPECTIONS),
                     [{**item.__dict__, "review_state": "unreviewed"} for item in items])
        if destinations and message is not None:
            rows = []
            for item in items:
                built = message(item)
                rows += [{"node": item.node, "destination": dest, "inspection_id": item.id,
                          "topic": built.topic, "payload": built.payload, "created_at": now,
                          "attempts": 0, "next_attempt_at": now, "state": "pending"}
                         for dest in destinations]
            ids = conn.execute(
                insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True), rows
            ).scalars().all()
            for row, row_id in zip(rows, ids, strict=True):
                pending[str(row["destination"])].append(PendingEvent(
                    int(row_id), str(row["inspection_id"]), str(row["topic"]),
                    str(row["payload"]), 0))
    return pending


def record_batch_isolated(
    db: Database, items: list[NewInspection], destinations: list[str],
    message: MessageBuilder | None = None,
) -> tuple[dict[str, list[PendingEvent]], list[Exception | None]]:
    """`record_batch`, but one bad record cannot fail the others: when the group commit fails
    on the data (a DataError, IntegrityError, a value the driver cannot encode... anything but
    a connection error), each item is retried in its own transaction. Returns the outbox rows
    written and, per item, None when it was committed or the error that refused it. A
    connection error of the group commit raises, as it would for every item alone."""
    try:
        return record_batch(db, items, destinations, message), [None] * len(items)
    except Exception as exc:
        if database_unavailable(exc):
            raise
        if len(items) == 1:
            return {d: [] for d in destinations}, [exc]
    pending: dict[str, list[PendingEvent]] = {d: [] for d in destinations}
    outcomes: list[Exception | None] = []
    for item in items:
        try:
            written = record_batch(db, [item], destinations, message)
        except Exception as exc:  # connection errors too: earlier items are committed
            outcomes.append(exc)
            continue
        for dest, events in written.items():
            pending[dest].extend(events)
        outcomes.append(None)
    return pending, outcomes


def get_inspection(db: Database, inspection_id: str) -> Inspection | None:
    with db.session() as s:
        return s.get(Inspection, inspection_id)


def find_by_request_key(db: Database, station: str, request_key: str) -> Inspection | None:
    """The inspection a client recorded under an Idempotency-Key at a station, if any."""
    with db.session() as s:
        return s.scalars(select(Inspection).where(
            Inspection.station == station, Inspection.request_key == request_key)).first()


@dataclass(frozen=True)
class InspectionQuery:
    """Filters for listing inspections; newest first, keyset-paginated by `before` (an id)."""

    station: str | None = None
    verdict: Literal["pass", "fail"] | None = None
    review: ReviewFilter | None = None
    since: datetime | None = None
    until: datetime | None = None
    model_name: str | None = None
    before: str | None = None
    limit: int = 50


def where_station_time(
    stmt: Select[Inspection], station: str | None, since: datetime | None,
    until: datetime | None,
) -> Select[Inspection]:
    """Inspections of `station` made in [since, until); each filter only when given."""
    if station:
        stmt = stmt.where(Inspection.station == station)
    if since:
        stmt = stmt.where(Inspection.created_at >= since)
    if until:
        stmt = stmt.where(Inspection.created_at < until)
    return stmt


def list_inspections(db: Database, q: InspectionQuery) -> tuple[list[Inspection], str | None]:
    """A page of inspections and the cursor for the next page (None at the end)."""
    stmt = where_station_time(select(Inspection), q.station, q.since, q.until)
    if q.verdict:
        stmt = stmt.where(Inspection.verdict == q.verdict)
    if q.review == "reviewed":
        stmt = stmt.where(Inspection.review_state != "unreviewed")
    elif q.review:
        stmt = stmt.where(Inspection.review_state == q.review)
    if q.model_name:
        stmt = stmt.where(Inspection.model_name == q.model_name)
    if q.before:
        stmt = stmt.where(Inspection.id < q.before)
    stmt = stmt.order_by(Inspection.id.desc()).limit(q.limit + 1)
    with db.session() as s:
        rows = list(s.scalars(stmt))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return rows, (rows[-1].id if more and rows else None)


def add_review(
    db: Database,
    inspection_id: str,
    *,
    label: ReviewLabel,
    reviewer: str,
    defect_type: str | None = None,
    note: str | None = None,
) -> Review | None:
    """Store a review and set the inspection's review state; None if the inspection is unknown."""
    with db.session() as s:
        if s.get(Inspection, inspection_id) is None:
            return None
        review = Review(
            inspection_id=inspection_id, label=label, defect_type=defect_type, note=note,
            reviewer=reviewer, created_at=utcnow(),
        )
        s.add(review)
        s.execute(
            update(Inspection).where(Inspection.id == inspection_id).values(review_state=label)
        )
    return review


def reviews_for(db: Database, inspection_id: str) -> list[Review]:
    """Reviews of one inspection, oldest first."""
    with db.session() as s:
        stmt = select(Review).where(Review.inspection_id == inspection_id).order_by(Review.id)
        return list(s.scalars(stmt))
