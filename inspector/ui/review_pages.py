"""The review queue, the part page, recording a decision, and the part's images."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from inspector.core.errors import InvalidTextError
from inspector.core.names import DEFECT_TYPE_RE
from inspector.core.text import check_text
from inspector.server.artifact_files import artifact_response
from inspector.store import deployments, reviews
from inspector.store import inspections as store
from inspector.store.db import Database
from inspector.store.models import Inspection, Review
from inspector.ui.session import UiSession, same_token
from inspector.ui.web import (
    PERIODS,
    ImageSessionDep,
    QueueFilters,
    SessionDep,
    render,
    services,
)

router = APIRouter()
PER_PAGE = 25
InspectionId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
#: Card labels that name no defect type (an anomaly model's generic classes).
_GENERIC_LABELS = {"good", "defect", "ok", "pass", "fail", "ng"}


def normalise_defect_type(text: str) -> str | None:
    """'Scratch mark ' -> 'scratch_mark'; None when empty; ValueError when not a plain name."""
    name = re.sub(r"[\s]+", "_", text.strip().lower())
    if not name:
        return None
    if not DEFECT_TYPE_RE.match(name):
        raise ValueError(f"'{text.strip()}' is not a usable defect type: use letters, digits, "
                         "'-' and '_' (it becomes a folder name in dataset exports)")
    return name


def model_labels(db: Database, name: str, version: str) -> list[str]:
    """The defect classes on the model's card (generic names like 'good' left out)."""
    card_json = deployments.model_card_json(db, name, version)
    if not card_json:
        return []
    try:
        labels = json.loads(card_json).get("labels", [])
    except (ValueError, AttributeError):
        return []
    return [str(x) for x in labels if str(x).lower() not in _GENERIC_LABELS]


def defect_choices(db: Database, row: Inspection) -> list[str]:
    """Types to offer, keys 1..9 in this order: the model's labels, then past choices."""
    out: list[str] = []
    for name in [*model_labels(db, row.model_name, row.model_version), *reviews.defect_types(db)]:
        if name not in out:
            out.append(name)
    return out


def score_gauge(score: float, threshold: float) -> dict[str, float]:
    """Positions (percent of the bar) for the score and the threshold marker."""
    top = max(score, threshold, 1e-9) * 1.25 if threshold > 0 else max(abs(score), 1.0) * 1.25
    clamp = lambda v: min(max(v / top * 100.0, 0.0), 100.0)  # noqa: E731
    return {"score": clamp(score), "threshold": clamp(threshold)}


def _latest_review(db: Database, row: Inspection | None) -> Review | None:
    history = store.reviews_for(db, row.id) if row else []
    return history[-1] if history else None


@router.get("/", response_class=HTMLResponse)
def queue(request: Request, session: SessionDep, page: int = 1) -> Response:
    db = services(request).db
    filters = QueueFilters.parse(request.query_params)
    rows, total = reviews.queue_page(db, filters.query(), page, PER_PAGE)
    pages = max(math.ceil(total / PER_PAGE), 1)
    prev_id = request.query_params.get("prev")
    prev = store.get_inspection(db, prev_id) if prev_id and len(prev_id) == 32 else None
    return render(
        request, "queue.html", session, rows=rows, total=total, page=min(max(page, 1), pages),
        pages=pages, per_page=PER_PAGE, filters=filters, periods=PERIODS,
        stations=reviews.queue_stations(db), gauge=score_gauge, prev=prev,
        prev_review=_latest_review(db, prev),
    )


def _part_page(request: Request, session: UiSession, inspection_id: str, status: int = 200,
               error: str | None = None) -> Response:
    db = services(request).db
    row = store.get_inspection(db, inspection_id)
    if row is None:
        return render(request, "error.html", session, status=404,
                      message=f"There is no inspection {inspection_id}.")
    filters = QueueFilters.parse(request.query_params)
    query = filters.query()
    prev_id = request.query_params.get("prev")
    prev = store.get_inspection(db, prev_id) if prev_id and len(prev_id) == 32 else None
    history = store.reviews_for(db, row.id)
    return render(
        request, "part.html", session, status=status, row=row, filters=filters, error=error,
        next_id=reviews.next_in_queue(db, query, row.id),
        in_queue=reviews.queue_page(db, query, 1, 1)[1], choices=defect_choices(db, row),
        gauge=score_gauge(row.score, row.threshold), history=history, prev=prev,
        prev_review=_latest_review(db, prev),
        current_type=history[-1].defect_type if history else None,
    )


@router.get("/parts/{inspection_id}", response_class=HTMLResponse)
def part(request: Request, session: SessionDep, inspection_id: InspectionId) -> Response:
    return _part_page(request, session, inspection_id)


@router.post("/parts/{inspection_id}/review")
def review(
    request: Request,
    session: SessionDep,
    inspection_id: InspectionId,
    decision: Annotated[str, Form(pattern=r"^(defect|good)$")],
    csrf: Annotated[str, Form(max_length=200)] = "",
    defect_type: Annotated[str, Form(max_length=100)] = "",
    new_type: Annotated[str, Form(max_length=100)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Record a decision, then go to the next part in the (filtered) queue. A typed
    `new_type` wins over the picked `defect_type`."""
    if not same_token(session.csrf, csrf):
        return render(request, "error.html", session, status=403,
                      message="This form expired or did not come from this site. "
                              "Reload the page and try again.")
    try:
        check_text(defect_type, "defect type", max_length=100)
        check_text(new_type, "new defect type", max_length=100)
        check_text(note, "note", max_length=2000, multiline=True)
        kind = normalise_defect_type(new_type or defect_type) if decision == "defect" else None
    except InvalidTextError as exc:
        return _part_page(request, session, inspection_id, exc.status_code, str(exc))
    except ValueError as exc:
        return _part_page(request, session, inspection_id, 400, str(exc))
    db = services(request).db
    saved = store.add_review(db, inspection_id, label=decision,  # type: ignore[arg-type]
                             reviewer=session.name, defect_type=kind,
                             note=note.strip() or None)
    if saved is None:
        return render(request, "error.html", session, status=404,
                      message=f"There is no inspection {inspection_id}.")
    filters = QueueFilters.parse(request.query_params)
    next_id = reviews.next_in_queue(db, filters.query(), inspection_id)
    target = f"/ui/parts/{next_id}" if next_id else "/ui/"
    return RedirectResponse(target + filters.qs(prev=inspection_id), status_code=303)


def _artifact(request: Request, inspection_id: str, heatmap: bool) -> Response:
    svc = services(request)
    row = store.get_inspection(svc.db, inspection_id)
    key = (row.heatmap_key if heatmap else row.image_key) if row else None
    found = artifact_response(svc, key) if key else None
    return found if found is not None else Response(status_code=404)


@router.get("/parts/{inspection_id}/image")
def image(request: Request, _session: ImageSessionDep, inspection_id: InspectionId) -> Response:
    return _artifact(request, inspection_id, heatmap=False)


@router.get("/parts/{inspection_id}/heatmap")
def heatmap(request: Request, _session: ImageSessionDep, inspection_id: InspectionId) -> Response:
    return _artifact(request, inspection_id, heatmap=True)
