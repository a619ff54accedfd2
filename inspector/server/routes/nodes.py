"""GET /v1/nodes: the fleet's nodes, what each runs against the desired state, and which
have gone quiet."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from inspector.server.deps import ReaderDep, ServicesDep
from inspector.server.fleet import NodesOut, fleet_view

router = APIRouter(prefix="/v1", tags=["fleet"])


@router.get("/nodes", response_model=NodesOut, summary="The fleet's nodes and their stations")
async def list_nodes(services: ServicesDep, _principal: ReaderDep) -> NodesOut:
    """Every node sharing this database: site, line, URL, version, inference plan, models
    loaded, the model it runs at each station against the desired one (`in_sync`, and the
    error when it could not load it), traffic (frames/s, fail and error rates) from its last
    heartbeat, and `stale: true` when that heartbeat is older than `stale_after` of the
    node's heartbeat intervals.

    Example: `curl -H 'Authorization: Bearer REVIEWER' http://127.0.0.1:8000/v1/nodes`
    """
    return await run_in_threadpool(fleet_view, services.db, services.settings.stale_after)
