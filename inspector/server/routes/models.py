"""GET /v1/models (what is loaded, what was refused) and PUT /v1/stations/{station}/model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from inspector.server.deps import AdminDep, ReaderDep, ServicesDep
from inspector.server.schemas import DeployIn, DeployOut, ModelOut, ModelsOut
from inspector.settings import SAFE_NAME
from inspector.store import deployments

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", response_model=ModelsOut, summary="Loaded models and station mapping")
def list_models(services: ServicesDep, _principal: ReaderDep) -> ModelsOut:
    reg = services.registry
    out = []
    for ref, served in sorted(reg.models.items()):
        card = served.detector.card
        out.append(ModelOut(
            name=card.name, version=card.version, kind=card.kind,
            input_width=card.input.width, input_height=card.input.height,
            threshold=card.threshold.value, provider=served.detector.model.provider,
            stations=sorted(st for st, r in reg.stations.items() if r == ref),
        ))
    return ModelsOut(models=out, refused=reg.refused, stations=dict(sorted(reg.stations.items())))


@router.put("/stations/{station}/model", response_model=DeployOut,
            summary="Make a loaded model answer a station")
def deploy(
    services: ServicesDep,
    principal: AdminDep,
    station: Annotated[str, Path(pattern=SAFE_NAME)],
    body: DeployIn,
) -> DeployOut:
    """Switch a station to a loaded model version; takes effect for the next frame."""
    full = services.registry.resolve_ref(body.model)
    name, version = full.split(":", 1)
    deployments.deploy(services.db, deployments.Deployment(
        station=station, mode=body.mode, model_name=name, model_version=version,
        deployed_by=principal.name))
    services.registry.deploy(station, full)
    return DeployOut(station=station, model=full, mode=body.mode)
