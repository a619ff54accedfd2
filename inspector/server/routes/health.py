"""/healthz (the process answers), /readyz (models loaded, database reachable), /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from inspector.server.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: models loaded and database reachable")
def readyz(services: ServicesDep) -> JSONResponse:
    models = sorted(services.registry.models)
    database = services.db.ping()
    ready = bool(models) and database
    body = {
        "ready": ready,
        "models": models,
        "refused": sorted(services.registry.refused),
        "database": "ok" if database else "unreachable",
        "mqtt": {None: "off", True: "connected", False: "disconnected"}[
            services.publishers.mqtt_connected],
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
