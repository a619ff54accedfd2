"""QA review pages under `/ui`: sign in with a reviewer key, work through flagged parts,
watch each station's yield, false-reject rate and score drift, and the fleet's nodes.
Server-rendered (Jinja2) with a little vanilla JavaScript; no build step, nothing loaded from
outside the server."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from inspector.ui import fleet_pages, model_pages, review_pages, signin, station_pages
from inspector.ui.web import SignInRequired, signin_required

STATIC = Path(__file__).with_name("static")
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}

router = APIRouter(prefix="/ui", include_in_schema=False)
router.include_router(signin.router)
router.include_router(review_pages.router)
router.include_router(station_pages.router)
router.include_router(model_pages.router)
router.include_router(fleet_pages.router)


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The pages' CSS and JavaScript (a flat folder; nothing else is served)."""
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES \
            or not path.is_file():
        return Response(status_code=404)
    return FileResponse(path, media_type=_STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=86400"})


__all__ = ["SignInRequired", "router", "signin_required"]
