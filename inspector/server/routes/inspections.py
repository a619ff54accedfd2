"""GET /v1/inspections (filters, pages), one record, its image and heatmap; POST a review."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, Response

from inspector.core.names import NAME_PATTERN, as_utc
from inspector.lifecycle.errors import NotFoundError
from inspector.server.artifact_files import artifact_response
from inspector.server.deps import ReaderDep, ServicesDep
from inspector.server.errors import error_responses
from inspector.server.schemas import InspectionOut, InspectionPage, ReviewIn, ReviewOut
from inspector.store import inspections as store
from inspector.store.models import Inspection

router = APIRouter(prefix="/v1/inspections", tags=["inspections"])

InspectionId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="Inspection id")]
_NO_INSPECTION = error_responses({404: "No such inspection"})


def _get(services: ServicesDep, inspection_id: str) -> Inspection:
    row = store.get_inspection(services.db, inspection_id)
    if row is None:
        raise NotFoundError(f"no inspection {inspection_id}",
                            hint="list inspections with GET /v1/inspections")
    return row


@router.get("", response_model=InspectionPage, summary="List inspections, newest first")
def list_inspections(
    services: ServicesDep,
    _principal: ReaderDep,
    station: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    verdict: Literal["pass", "fail"] | None = None,
    review: Annotated[Literal["unreviewed", "reviewed", "defect", "good"] | None,
                      Query(description="Review state")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601, exclusive")] = None,
    model: Annotated[str | None, Query(pattern=NAME_PATTERN, description="Model name")] = None,
    before: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$",
                                        description="Cursor from the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> InspectionPage:
    """Filter by station, verdict, review state, model and time; page with `before`.

    Times without a zone are taken as UTC."""
    since, until = as_utc(since), as_utc(until)
    q = store.InspectionQuery(station=station, verdict=verdict, review=review, since=since,
                              until=until, model_name=model, before=before, limit=limit)
    rows, cursor = store.list_inspections(services.db, q)
    return InspectionPage(items=[InspectionOut.of(r) for r in rows], next_cursor=cursor)


@router.get("/{inspection_id}", response_model=InspectionOut, summary="One inspection",
            responses=_NO_INSPECTION)
def get_inspection(
    services: ServicesDep, _principal: ReaderDep, inspection_id: InspectionId
) -> InspectionOut:
    return InspectionOut.of(_get(services, inspection_id))


def _artifact(services: ServicesDep, key: str | None, what: str, inspection_id: str
              ) -> Response:
    if key is None:
        raise NotFoundError(
            f"no {what} stored for inspection {inspection_id}",
            hint="every fail is stored; passes only at the sample_passes rate, and retention "
                 "removes old artifacts",
        )
    found = artifact_response(services, key)
    if found is None:
        raise NotFoundError(f"the {what} of inspection {inspection_id} is gone from disk",
                            hint="it was removed by retention or by hand, or it is on the "
                                 "node that judged the frame (only fails are shared)")
    return found


@router.get("/{inspection_id}/image", summary="The frame as the camera sent it",
            response_class=FileResponse,
            responses=error_responses({404: "No such inspection, or its frame is not stored"}))
def get_image(services: ServicesDep, _principal: ReaderDep, inspection_id: InspectionId
              ) -> Response:
    row = _get(services, inspection_id)
    return _artifact(services, row.image_key, "image", inspection_id)


@router.get("/{inspection_id}/heatmap", summary="The heatmap overlay (JPEG)",
            response_class=FileResponse,
            responses=error_responses({404: "No such inspection, or its heatmap is not stored"}))
def get_heatmap(services: ServicesDep, _principal: ReaderDep, inspection_id: InspectionId
                ) -> Response:
    row = _get(services, inspection_id)
    return _artifact(services, row.heatmap_key, "heatmap", inspection_id)


@router.post("/{inspection_id}/review", response_model=ReviewOut, status_code=201,
             summary="Label an inspection: defect (with a type) or good",
             responses=error_responses({404: "No such inspection"}))
def review(
    services: ServicesDep, principal: ReaderDep, inspection_id: InspectionId, body: ReviewIn
) -> ReviewOut:
    defect_type = body.defect_type if body.label == "defect" else None
    saved = store.add_review(services.db, inspection_id, label=body.label, reviewer=principal.name,
                             defect_type=defect_type, note=body.note)
    if saved is None:
        raise NotFoundError(f"no inspection {inspection_id}",
                            hint="list inspections with GET /v1/inspections")
    return ReviewOut.of(saved)
