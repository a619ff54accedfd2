"""GET /v1/models (what is loaded, what was refused) and PUT /v1/stations/{station}/model
(active or shadow; the other registry routes are in `registry.py`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from inspector.core.names import NAME_PATTERN
from inspector.lifecycle.registry import ModelRegistry
from inspector.lifecycle.schemas import SignatureOut
from inspector.server.deps import AdminDep, ReaderDep, ServicesDep
from inspector.server.errors import error_responses
from inspector.server.routes.registry import deployer_of
from inspector.server.schemas import DeployIn, DeployOut, ModelOut, ModelsOut

router = APIRouter(prefix="/v1", tags=["models"])


def models_out(reg: ModelRegistry) -> ModelsOut:
    """The loaded models, who signed each, and what was refused (the API and the review
    desk's models page show the same)."""
    out = []
    for ref, served in sorted(reg.models.items()):
        card = served.detector.card
        out.append(ModelOut(
            name=card.name, version=card.version, kind=card.kind,
            input_width=card.input.width, input_height=card.input.height,
            threshold=card.threshold.value, provider=served.detector.model.provider,
            provider_reason=served.detector.model.provider_reason,
            precision=card.export.precision,
            stations=sorted(st for st, r in reg.stations.items() if r == ref),
            signature=SignatureOut.of(served.signature),
        ))
    return ModelsOut(models=out, refused=reg.refused, stations=dict(sorted(reg.stations.items())))


@router.get("/models", response_model=ModelsOut, summary="Loaded models and station mapping")
def list_models(services: ServicesDep, _principal: ReaderDep) -> ModelsOut:
    """Each model with its stations and its signature (key id, signer, time, trusted), or
    null when unsigned; packages refused at startup with the reason."""
    return models_out(services.registry)


@router.put("/stations/{station}/model", response_model=DeployOut,
            summary="Deploy a model to a station, as active or shadow",
            responses=error_responses({
                404: "The model is not installed (or its version is ambiguous)",
                422: "The installed package is refused for its signature (trusted_keys, "
                     "require_signed)",
                409: "The model is already active at the station",
                503: "The database is unavailable (see Retry-After); nothing was changed"}))
async def deploy(
    services: ServicesDep,
    principal: AdminDep,
    station: Annotated[str, Path(pattern=NAME_PATTERN)],
    body: DeployIn,
) -> DeployOut:
    """Switch a station's active model (frames already admitted finish on the old one, the
    next ones use the new one), or set its shadow model. A version that is installed but not
    loaded is loaded first."""
    state = await deployer_of(services).deploy(station, body.model, body.mode, principal.name)
    model = state.active if body.mode == "active" else state.shadow
    return DeployOut(station=station, model=model or body.model, mode=body.mode)
