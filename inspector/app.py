"""The FastAPI app factory: settings in, a ready app out (services start in the lifespan).

    inspector serve --models models/                      # settings from flags, INSPECTOR_*, file
    uvicorn --factory inspector.app:create_app \
        --http inspector.server.transport:HttpToolsWithDeadlines \
        --timeout-keep-alive 5 --limit-concurrency 1000

`inspector serve` also applies the connection settings (header_timeout_s, body_timeout_s,
keep_alive_timeout_s, max_connections; see inspector.server.transport). Under uvicorn's own
command they are not read: without `--http ...WithDeadlines` a client that stalls mid-request
holds its connection for ever, and the protocol given there uses the default 10 s / 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import cv2
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from inspector import ui
from inspector.core.errors import InspectorError
from inspector.core.names import ModelRef
from inspector.lifecycle.archive import Limits
from inspector.lifecycle.batcher import Admission
from inspector.lifecycle.deployer import Deployer
from inspector.lifecycle.distribution import Fleet, share
from inspector.lifecycle.reconciler import Reconciler
from inspector.lifecycle.registry import ModelRegistry
from inspector.lifecycle.shadow import ShadowRunner
from inspector.opcua import VerdictFeed, start_opcua
from inspector.publish.manager import Publishers
from inspector.publish.node_status import NodeStatusPublisher
from inspector.server.auth import KeyCache
from inspector.server.deps import Services
from inspector.server.errors import install_error_handlers
from inspector.server.fleet import Heartbeat
from inspector.server.limits import BodyLimitMiddleware
from inspector.server.metrics import Metrics
from inspector.server.routes import health, inspect, inspections, models, nodes, reviews
from inspector.server.routes import registry as registry_routes
from inspector.server.service import InspectionService
from inspector.settings import Settings, load_settings
from inspector.store import artifact_blobs, deployments
from inspector.store.artifacts import ArtifactStore
from inspector.store.db import Database, database_unavailable
from inspector.store.packages import DatabasePackageStore

if TYPE_CHECKING:
    from inspector.opcua.server import OpcUaServer

log = logging.getLogger(__name__)


def _in_flight(admission: Admission) -> Callable[[], int]:
    return lambda: admission.in_flight


def build_services(settings: Settings, metrics: Metrics) -> Services:
    """Open the database (migrating it), load models, wire publishers (blocking; no threads
    started yet)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cv2.setNumThreads(settings.opencv_threads)
    db = Database(settings.resolved_database_url)
    db.migrate()
    log.info("database %s ready (%s)", db.engine.url.render_as_string(hide_password=True),
             db.backend)
    artifacts = ArtifactStore(settings.artifacts_dir,
                              node=settings.node_id if settings.shares_storage else None)
    registry = ModelRegistry(settings, on_batch=metrics.batch_observer)
    registry.load_all()
    for ref, served in registry.models.items():
        card = served.detector.card
        deployments.register_model_version(
            db, name=card.name, version=card.version, kind=card.kind, sha256=card.onnx_sha256,
            card_json=card.model_dump_json(), path=str(served.detector.package.root.resolve()))
        metrics.track_queue(ref, _in_flight(served.admission))
    for d in deployments.current_deployments(db, "active"):
        ref = str(ModelRef(d.model_name, d.model_version))
        if ref in registry.models:
            registry.stations[d.station] = ref
        else:
            log.error("station %s is deployed to %s, which is not loaded; it keeps its "
                      "configured model", d.station, ref)
    fleet = _fleet(settings, db, registry)
    publishers = Publishers(settings, db, on_backlog=metrics.set_backlog)
    service = InspectionService(settings, registry, db, artifacts, metrics,
                                on_commit=publishers.offer)
    service.shadow = ShadowRunner(registry, db)
    budget = service.budget
    metrics.track_budget(lambda: budget.in_use, budget.limit)
    deployer = Deployer(settings, registry, db, metrics, fleet=fleet)
    deployer.restore()
    reconciler = Reconciler(deployer)
    deployer.on_change = reconciler.poke
    # The broker declares a silent node offline about when the fleet view marks it stale.
    keepalive = max(2, math.ceil(settings.heartbeat_s * settings.stale_after))
    status = (NodeStatusPublisher(settings.mqtt_url, settings.node_id, settings.site,
                                  settings.line, keepalive) if settings.mqtt_url else None)
    if not settings.auth_enabled:
        log.warning("authentication is OFF: every /v1 route is open to anyone who can reach "
                    "%s", settings.host)
    return Services(settings=settings, db=db, artifacts=artifacts, registry=registry,
                    inspections=service, publishers=publishers, metrics=metrics,
                    keys=KeyCache(db), deployer=deployer, reconciler=reconciler,
                    heartbeat=Heartbeat(settings, db, registry, metrics, status))


def _fleet(settings: Settings, db: Database, registry: ModelRegistry) -> Fleet | None:
    """The package store, when packages are shared through the database (fleet_storage), with
    every package this node loaded put into it so other nodes can fetch them."""
    if not settings.shares_storage:
        return None
    # A fetched package is checked like an upload: its signature against this node's trust
    # policy (the deployer passes it), `verify` for any further check before it is loaded.
    fleet = Fleet(db, DatabasePackageStore(db), settings.models_dir,
                  Limits(settings.max_package_bytes), verify=None)
    for served in registry.models.values():
        package = served.detector.package
        try:
            share(fleet, package.root, package.card)
        except (InspectorError, OSError) as exc:
            log.error("could not share %s in the package store: %s", served.ref, exc)
    return fleet


async def _retention_loop(services: Services) -> None:
    s = services.settings
    jobs: list[tuple[str, Callable[[], object]]] = [
        ("artifact retention", lambda: services.artifacts.enforce_retention(
            services.db, timedelta(days=s.retention_days), int(s.retention_max_gb * 1e9))),
        # files of frames whose records never committed (crash, failed commit)
        ("artifact orphan sweep", lambda: services.artifacts.sweep_orphans(services.db)),
    ]
    if s.shares_storage:  # copies in the shared database, whichever node made them
        jobs.append(("shared artifact expiry", lambda: artifact_blobs.expire(
            services.db, timedelta(days=s.retention_days))))
    while True:
        for name, job in jobs:
            try:
                await asyncio.to_thread(job)
            except Exception as exc:
                if database_unavailable(exc):
                    log.warning("%s skipped: the database is unavailable; will retry", name)
                else:
                    log.exception("%s failed; will retry", name)
        await asyncio.sleep(s.retention_interval_s)


def _start_opcua(services: Services) -> OpcUaServer:
    """The OPC UA server, fed every committed verdict; nodes at once for the stations known
    now (configured or deployed), later for a station on its first verdict."""
    s, registry = services.settings, services.registry
    feed = VerdictFeed()
    services.inspections.verdict_listeners.append(feed.offer)
    stations = sorted(set(s.stations) | set(registry.stations))
    server = start_opcua(s, feed, stations, lambda: sorted(registry.models))
    log.info("OPC UA server listening on %s (namespace urn:inspector:%s; %s)",
             s.opcua_endpoint, s.line,
             "Basic256Sha256 Sign & Encrypt" if s.opcua_certificate else "unencrypted")
    return server


def _start_fleet(services: Services) -> list[asyncio.Task[None]]:
    """The reconcile and heartbeat loops (and the MQTT status connection)."""
    tasks = []
    if services.reconciler is not None:
        tasks.append(asyncio.create_task(services.reconciler.run(), name="reconcile"))
    if services.heartbeat is not None:
        if services.heartbeat.status is not None:
            services.heartbeat.status.start()
        tasks.append(asyncio.create_task(services.heartbeat.run(), name="heartbeat"))
    return tasks


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; services are created and started when the server starts."""
    settings = settings or load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await asyncio.to_thread(build_services, settings, metrics)
        app.state.services = services
        # First, so that a port already taken stops the start before any worker runs.
        opcua = await asyncio.to_thread(_start_opcua, services) \
            if settings.opcua_endpoint else None
        services.registry.start()
        services.inspections.start()
        services.publishers.start()
        background = [asyncio.create_task(_retention_loop(services), name="retention")]
        background += _start_fleet(services)
        log.info("inspector ready: %d model(s), stations %s", len(services.registry.models),
                 services.registry.stations or "(any, single model)")
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if services.heartbeat is not None and services.heartbeat.status is not None:
                await asyncio.to_thread(services.heartbeat.status.stop)
            if services.deployer is not None:
                await services.deployer.stop()
            await services.registry.stop()
            await services.inspections.stop()
            await asyncio.to_thread(services.publishers.stop)
            if opcua is not None:
                await asyncio.to_thread(opcua.stop)
            services.db.dispose()

    # The docs pages' JavaScript and CSS come from the installed fastapi-offline package, not
    # from a CDN: a line network often has no internet, and hints point people to /docs.
    app: FastAPI = FastAPIOffline(
        title="Inspector",
        summary="Defect inspection: frames in, verdicts and heatmaps out.",
        version="0.1.0",
        lifespan=lifespan,
    )

    def count_error(status: int) -> None:
        metrics.count_error(status)

    install_error_handlers(app, on_error=count_error)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       on_reject=count_error, path_limits={"/v1/models": (
                           settings.max_package_bytes, "raise max_package_bytes in settings")})
    for router in (inspect.router, inspections.router, models.router, health.router,
                   reviews.router, ui.router, registry_routes.router, nodes.router):
        app.include_router(router)
    app.add_exception_handler(ui.SignInRequired, ui.signin_required)
    return app
