"""What route handlers receive: the app's services and the calling principal, as aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from inspector.lifecycle.deployer import Deployer
from inspector.lifecycle.reconciler import Reconciler
from inspector.lifecycle.registry import ModelRegistry
from inspector.publish.manager import Publishers
from inspector.server.auth import (
    ANONYMOUS_ADMIN,
    KeyCache,
    Principal,
    bearer_token,
    check_role,
    check_station,
)
from inspector.server.errors import AuthenticationError
from inspector.server.fleet import Heartbeat
from inspector.server.metrics import Metrics
from inspector.server.service import InspectionService
from inspector.settings import Settings
from inspector.store.artifacts import ArtifactStore
from inspector.store.db import Database


@dataclass
class Services:
    """Everything the app builds at startup; lives on `app.state.services`."""

    settings: Settings
    db: Database
    artifacts: ArtifactStore
    registry: ModelRegistry
    inspections: InspectionService
    publishers: Publishers
    metrics: Metrics
    keys: KeyCache
    #: Deploys, promotes, rollbacks and uploads (the model registry).
    deployer: Deployer | None = None
    #: Follows the fleet's desired state for the stations this node serves.
    reconciler: Reconciler | None = None
    #: This node's row in the nodes table (and its MQTT status).
    heartbeat: Heartbeat | None = None


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread
    # hop on every request for a dictionary lookup.
    return get_services(request)


ServicesDep = Annotated[Services, Depends(_services)]


async def _authenticate(request: Request, roles: tuple[str, ...]) -> Principal:
    services = get_services(request)
    if not services.settings.auth_enabled:
        return ANONYMOUS_ADMIN
    token = bearer_token(request.headers.get("authorization"))
    found, principal = services.keys.peek(token)
    if not found:
        # A database outage raises here and leaves as 503 + Retry-After (errors.py).
        principal = await run_in_threadpool(services.keys.lookup, token)
    if principal is None:
        raise AuthenticationError("unknown or revoked API key",
                                  hint="check the key, or create one with "
                                       "`inspector keys create --role ROLE`")
    return check_role(principal, roles)


def require(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates the bearer key and checks its role."""

    async def dependency(request: Request) -> Principal:
        return await _authenticate(request, roles)

    return dependency


async def _camera(request: Request) -> Principal:
    """A camera (or admin) key; a station-scoped key only for its own stations (the
    `station` query parameter; a missing one is left to the route's validation)."""
    principal = await _authenticate(request, ("camera", "admin"))
    return check_station(principal, request.query_params.get("station"))


CameraDep = Annotated[Principal, Depends(_camera)]
ReaderDep = Annotated[Principal, Depends(require("reviewer", "admin"))]
AdminDep = Annotated[Principal, Depends(require("admin"))]
