"""GET /v1/reviews: QA labels for retraining scripts, with the facts of each inspection."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from inspector.core.names import NAME_PATTERN, as_utc
from inspector.server.deps import ReaderDep, ServicesDep
from inspector.server.schemas import ModelRef
from inspector.store import reviews as store

router = APIRouter(prefix="/v1/reviews", tags=["reviews"])

#: Largest id a BIGINT (PostgreSQL) or INTEGER (SQLite) column holds: bigger cursors are 422,
#: not a driver overflow.
MAX_ID = 2**63 - 1


class ReviewRowOut(BaseModel):
    id: int
    inspection_id: str
    label: Literal["defect", "good"]
    defect_type: str | None
    note: str | None
    reviewer: str
    created_at: datetime
    station: str
    part_id: str | None
    #: The model's verdict and score that the reviewer confirmed or overturned.
    verdict: Literal["pass", "fail"]
    score: float
    model: ModelRef

    @classmethod
    def of(cls, r: store.ReviewRow) -> ReviewRowOut:
        return cls(
            id=r.id, inspection_id=r.inspection_id, label=r.label,  # type: ignore[arg-type]
            defect_type=r.defect_type, note=r.note, reviewer=r.reviewer,
            created_at=r.created_at, station=r.station, part_id=r.part_id,
            verdict=r.verdict, score=r.score,  # type: ignore[arg-type]
            model=ModelRef(name=r.model_name, version=r.model_version),
        )


class ReviewPage(BaseModel):
    items: list[ReviewRowOut]
    #: Pass as `before` to get the next (older) page; null on the last page.
    next_cursor: int | None


@router.get("", response_model=ReviewPage, summary="List reviews (QA labels), newest first")
def list_reviews(
    services: ServicesDep,
    _principal: ReaderDep,
    since: Annotated[datetime | None, Query(description="Review time, ISO 8601, inclusive")]
    = None,
    until: Annotated[datetime | None, Query(description="Review time, ISO 8601, exclusive")]
    = None,
    station: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    label: Literal["defect", "good"] | None = None,
    history: Annotated[bool, Query(
        description="false: the current review of each inspection (the label to train on); "
                    "true: every review, including ones a later review replaced")] = False,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                        description="Cursor from the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ReviewPage:
    """Filter by review time, station and label; page with `before`.

    Times without a zone are taken as UTC. Example:
    `GET /v1/reviews?since=2024-05-01T00:00:00Z&station=s1&label=defect`"""
    q = store.ReviewQuery(since=as_utc(since), until=as_utc(until), station=station, label=label,
                          history=history, before=before, limit=limit)
    rows, cursor = store.list_reviews(services.db, q)
    return ReviewPage(items=[ReviewRowOut.of(r) for r in rows], next_cursor=cursor)
