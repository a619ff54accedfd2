"""/healthz (the process answers), /readyz (models loaded, database reachable), /metrics."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from inspector.server.deps import ServicesDep

router = APIRouter(tags=["health"])

#: An absolute path (POSIX or Windows) inside a message, up to a space, quote or colon.
_ABS_PATH = re.compile(r"""(?<![\w.])(?:[A-Za-z]:)?[/\\][^\s'":,;()\[\]]+""")


def public_refused(refused: dict[str, str], models_dir: Path) -> dict[str, str]:
    """Refused packages for an unauthenticated caller: `name:version` (the folder under the
    models folder) -> the reason, with file-system paths cut down to file names."""
    out: dict[str, str] = {}
    for folder, reason in refused.items():
        path = Path(folder)
        try:
            rel = path.resolve().relative_to(models_dir.resolve())
            ref = ":".join(rel.parts) if rel.parts else path.name
        except ValueError:
            ref = path.name
        for form in sorted({folder, str(path.resolve())}, key=len, reverse=True):
            reason = reason.replace(form + "/", "").replace(form, ref)
        out[ref] = _ABS_PATH.sub(lambda m: re.split(r"[/\\]", m.group())[-1] or "(path)",
                                 reason)
    return dict(sorted(out.items()))


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
        # Which provider serves each model and why ("cpu: no CUDA device found").
        "providers": {ref: {"provider": m.detector.model.kind,
                            "reason": m.detector.model.provider_reason}
                      for ref, m in sorted(services.registry.models.items())},
        "refused": public_refused(services.registry.refused, services.settings.models_dir),
        "database": "ok" if database else "unreachable",
        "mqtt": {None: "off", True: "connected", False: "disconnected"}[
            services.publishers.mqtt_connected],
        "opcua": services.settings.opcua_endpoint or "off",
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
def metrics(services: ServicesDep) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
