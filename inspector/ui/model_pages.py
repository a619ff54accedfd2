"""The models page: what this server serves, at which stations, and who signed each package."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from inspector.server.routes.models import models_out
from inspector.ui.web import SessionDep, render, services

router = APIRouter()


@router.get("/models", response_class=HTMLResponse)
def models(request: Request, session: SessionDep) -> Response:
    """The same list as GET /v1/models, for reviewers: a model's signer is who vouches for its
    threshold."""
    svc = services(request)
    return render(request, "models.html", session, listing=models_out(svc.registry),
                  require_signed=svc.settings.require_signed)
