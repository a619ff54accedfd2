"""The outbox: verdicts waiting for delivery to one destination (MQTT, a webhook).

Rows are written in the same transaction as their inspection, so nothing acknowledged can be
lost; a row is deleted only after its destination confirmed delivery (MQTT PUBACK, HTTP 2xx).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from inspector.core.names import utcnow
from inspector.store.db import Database
from inspector.store.models import OutboxEvent


@dataclass(frozen=True)
class OutboxMessage:
    """What one outbox row will send: an MQTT topic (the event name for webhooks) and the
    JSON payload. Built by inspector.publish.messages; stored as given."""

    topic: str
    payload: str


@dataclass(frozen=True)
class PendingEvent:
    """One delivery to attempt."""

    id: int
    inspection_id: str
    topic: str
    payload: str
    attempts: int


@dataclass(frozen=True)
class Failure:
    """A failed attempt: when to try again (None = give up, mark dead) and why."""

    id: int
    retry_in_s: float | None
    error: str


def fetch_due(db: Database, node: str, destination: str, limit: int = 100) -> list[PendingEvent]:
    """Pending rows whose next attempt is due, oldest first."""
    stmt = (
        select(OutboxEvent)
        .where(
            OutboxEvent.node == node,
            OutboxEvent.destination == destination,
            OutboxEvent.state == "pending",
            OutboxEvent.next_attempt_at <= utcnow(),
        )
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    with db.session() as s:
        return [
            PendingEvent(r.id, r.inspection_id, r.topic, r.payload, r.attempts)
            for r in s.scalars(stmt)
        ]


def settle(db: Database, delivered: list[int], failures: list[Failure]) -> None:
    """Delete delivered rows; push failed ones back (or mark them dead)."""
    if not delivered and not failures:
        return
    now = utcnow()
    with db.session() as s:
        if delivered:
            s.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(delivered)))
        for f in failures:
            values: dict[str, object] = {
                "attempts": OutboxEvent.attempts + 1,
                "last_error": f.error[:2000],
            }
            if f.retry_in_s is None:
                values["state"] = "dead"
            else:
                values["next_attempt_at"] = now + timedelta(seconds=f.retry_in_s)
            s.execute(update(OutboxEvent).where(OutboxEvent.id == f.id).values(**values))


def make_due(db: Database, node: str, destination: str) -> int:
    """Make every pending row of a destination due now (after a reconnect); returns the count."""
    with db.session() as s:
        result = s.execute(
            update(OutboxEvent)
            .where(
                OutboxEvent.node == node,
                OutboxEvent.destination == destination,
                OutboxEvent.state == "pending",
                OutboxEvent.next_attempt_at > utcnow(),
            )
            .values(next_attempt_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)


def backlog(db: Database, node: str) -> dict[tuple[str, str], int]:
    """Row counts by (destination, state) for this node."""
    stmt = (
        select(OutboxEvent.destination, OutboxEvent.state, func.count())
        .where(OutboxEvent.node == node)
        .group_by(OutboxEvent.destination, OutboxEvent.state)
    )
    with db.session() as s:
        return {(d, st): int(n) for d, st, n in s.execute(stmt)}
