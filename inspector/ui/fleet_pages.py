"""The Fleet page: every node sharing this database, what it runs against the desired state,
and which nodes have gone quiet (the same view as GET /v1/nodes)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from inspector.server.fleet import fleet_view
from inspector.ui.web import SessionDep, render, services

router = APIRouter()


@router.get("/fleet", response_class=HTMLResponse)
def fleet(request: Request, session: SessionDep) -> Response:
    svc = services(request)
    view = fleet_view(svc.db, svc.settings.stale_after)
    return render(request, "fleet.html", session, nodes=view.nodes,
                  this_node=svc.settings.node_id)
