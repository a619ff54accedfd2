"""This node in the fleet: its heartbeat (database row, MQTT status) and the fleet view that
GET /v1/nodes and the Fleet page show.

The heartbeat writes the node's row every `heartbeat_s` seconds: what it is (site, line,
version, inference plan, URL), what it serves and has loaded, and its traffic since the
previous beat (frames/s, share of fail verdicts, share of error answers). A node whose last
heartbeat is older than `stale_after` of its own intervals is shown stale.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from datetime import datetime
from time import monotonic

from pydantic import BaseModel

from inspector import __version__
from inspector.core.names import ModelRef, utcnow
from inspector.lifecycle.registry import ModelRegistry
from inspector.publish.node_status import NodeStatusPublisher
from inspector.server.metrics import Metrics
from inspector.settings import Settings
from inspector.store import deployments, nodes
from inspector.store.db import Database, database_unavailable

log = logging.getLogger(__name__)


class Heartbeat:
    """Registers this node and refreshes its row (and its MQTT status) periodically."""

    def __init__(self, settings: Settings, db: Database, registry: ModelRegistry,
                 metrics: Metrics, status: NodeStatusPublisher | None = None) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.metrics = metrics
        self.status = status
        self.started_at = utcnow()
        self._last = (monotonic(), metrics.totals())

    def info(self) -> nodes.NodeInfo:
        s, reg = self.settings, self.registry
        providers = sorted({m.detector.model.provider for m in reg.models.values()})
        plan = (f"{', '.join(providers) or s.providers}: {reg.threads.workers} call(s) x "
                f"{reg.threads.intra_op_threads or 'auto'} thread(s)")
        return nodes.NodeInfo(s.node_id, s.site, s.line, s.node_url, __version__, plan,
                              s.serve_stations, sorted(reg.models), self.started_at,
                              s.heartbeat_s)

    def load(self) -> nodes.NodeLoad:
        """Traffic since the previous call."""
        now, totals = monotonic(), self.metrics.totals()
        then, before = self._last
        self._last = (now, totals)
        frames = totals.frames - before.frames
        fails = totals.fails - before.fails
        errors = totals.errors - before.errors
        return nodes.NodeLoad(frames_per_s=round(frames / max(now - then, 1e-6), 3),
                              fail_rate=round(fails / frames, 4) if frames else 0.0,
                              error_rate=round(errors / (frames + errors), 4)
                              if frames + errors else 0.0)

    def beat(self) -> None:
        """One heartbeat (blocking)."""
        info, load = self.info(), self.load()
        if self.status is not None:
            self.status.publish({"node": info.node_id, "site": info.site, "line": info.line,
                                 "url": info.base_url, "models": info.models,
                                 "serves": info.serves, **asdict(load)})
        nodes.heartbeat(self.db, info, load, utcnow())

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.beat)
            except Exception as exc:
                if database_unavailable(exc):
                    log.warning("heartbeat not recorded: the database is unavailable")
                else:
                    log.exception("heartbeat failed; will retry")
            await asyncio.sleep(self.settings.heartbeat_s)


class NodeStationOut(BaseModel):
    """One station (and mode) at one node: what it should run, what it runs."""

    station: str
    mode: str
    desired: str | None
    running: str | None
    in_sync: bool
    ok: bool
    error: str | None
    at: datetime


class NodeOut(BaseModel):
    node_id: str
    site: str
    line: str
    url: str
    version: str
    plan: str
    #: Stations it follows; null = every station.
    serves: list[str] | None
    models: list[str]
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    stale: bool
    frames_per_s: float
    fail_rate: float
    error_rate: float
    stations: list[NodeStationOut]


class NodesOut(BaseModel):
    nodes: list[NodeOut]


def fleet_view(db: Database, stale_after: int) -> NodesOut:
    """Every registered node against the current desired state (blocking)."""
    want = {(d.station, mode): str(ModelRef(d.model_name, d.model_version))
            for mode in ("active", "shadow") for d in deployments.current_deployments(db, mode)}
    now = utcnow()
    out = []
    for rec in nodes.list_nodes(db):
        age = (now - rec.heartbeat_at).total_seconds()
        stations = []
        for o in rec.stations:
            desired = want.get((o.station, o.mode))
            stations.append(NodeStationOut(
                station=o.station, mode=o.mode, desired=desired, running=o.running,
                in_sync=desired in (None, o.running), ok=o.ok, error=o.error, at=o.at))
        out.append(NodeOut(
            node_id=rec.info.node_id, site=rec.info.site, line=rec.info.line,
            url=rec.info.base_url, version=rec.info.version, plan=rec.info.plan,
            serves=rec.info.serves, models=rec.info.models, started_at=rec.info.started_at,
            heartbeat_at=rec.heartbeat_at, heartbeat_age_s=round(age, 3),
            stale=age > stale_after * rec.info.heartbeat_s, **asdict(rec.load),
            stations=stations))
    return NodesOut(nodes=out)
