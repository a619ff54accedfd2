"""The fleet's nodes: who they are, their heartbeats, and what each runs at its stations.

Each node writes only its own rows (its `nodes` row on every heartbeat, its `node_stations`
rows after a reconcile), so nodes never contend for a row. Readers (GET /v1/nodes, the Fleet
page) join them with the desired state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from inspector.store.db import Database
from inspector.store.models import NodeRow, NodeStation


@dataclass(frozen=True)
class NodeInfo:
    """What a node says about itself when it registers and on every heartbeat."""

    node_id: str
    site: str
    line: str
    base_url: str
    version: str
    plan: str
    #: Stations it follows; None = every station.
    serves: list[str] | None
    models: list[str]
    started_at: datetime
    heartbeat_s: float


@dataclass(frozen=True)
class NodeLoad:
    """Traffic since the previous heartbeat."""

    frames_per_s: float
    #: Share of verdicts that were `fail`.
    fail_rate: float
    #: Share of requests answered with an error.
    error_rate: float


@dataclass(frozen=True)
class StationOutcome:
    """A node's last reconcile of one station and mode: what it should run, what it runs,
    and why not when they differ."""

    station: str
    mode: str
    desired: str | None
    running: str | None
    ok: bool
    error: str | None
    at: datetime


@dataclass(frozen=True)
class NodeRecord:
    info: NodeInfo
    load: NodeLoad
    heartbeat_at: datetime
    stations: list[StationOutcome]


def heartbeat(db: Database, info: NodeInfo, load: NodeLoad, at: datetime) -> None:
    """Register the node or refresh its row."""
    values = {
        "site": info.site, "line": info.line, "base_url": info.base_url,
        "version": info.version, "plan": info.plan,
        "serves": None if info.serves is None else json.dumps(info.serves),
        "models": json.dumps(info.models), "started_at": info.started_at,
        "heartbeat_at": at, "heartbeat_s": info.heartbeat_s,
        "frames_per_s": load.frames_per_s, "fail_rate": load.fail_rate,
        "error_rate": load.error_rate,
    }
    with db.session() as s:
        row = s.get(NodeRow, info.node_id)
        if row is None:
            s.add(NodeRow(node_id=info.node_id, **values))
        else:
            for key, value in values.items():
                setattr(row, key, value)


def record_outcomes(db: Database, node_id: str, outcomes: list[StationOutcome],
                    gone: Sequence[tuple[str, str]] = ()) -> None:
    """Write the node's outcomes (one row per station and mode) and drop those of stations
    and modes (`gone`) it no longer runs."""
    with db.session() as s:
        for station, mode in gone:
            s.execute(delete(NodeStation).where(NodeStation.node_id == node_id,
                                                NodeStation.station == station,
                                                NodeStation.mode == mode))
        for o in outcomes:
            row = s.get(NodeStation, (node_id, o.station, o.mode))
            if row is None:
                row = NodeStation(node_id=node_id, station=o.station, mode=o.mode)
                s.add(row)
            row.desired, row.running, row.ok, row.error, row.at = \
                o.desired, o.running, o.ok, o.error, o.at


def running_models(db: Database, station: str, mode: str) -> list[str]:
    """The distinct models the nodes report running at `station` in `mode`."""
    with db.session() as s:
        found = s.scalars(select(NodeStation.running).distinct().where(
            NodeStation.station == station, NodeStation.mode == mode,
            NodeStation.running.is_not(None))).all()
    return sorted(r for r in found if r is not None)


def list_nodes(db: Database) -> list[NodeRecord]:
    """Every node that ever registered, with its station outcomes, by node id."""
    with db.session() as s:
        rows = s.scalars(select(NodeRow).order_by(NodeRow.node_id)).all()
        outcomes = s.scalars(select(NodeStation).order_by(
            NodeStation.node_id, NodeStation.station, NodeStation.mode)).all()
    by_node: dict[str, list[StationOutcome]] = {}
    for o in outcomes:
        by_node.setdefault(o.node_id, []).append(
            StationOutcome(o.station, o.mode, o.desired, o.running, o.ok, o.error, o.at))
    return [
        NodeRecord(
            info=NodeInfo(r.node_id, r.site, r.line, r.base_url, r.version, r.plan,
                          None if r.serves is None else list(json.loads(r.serves)),
                          list(json.loads(r.models)), r.started_at, r.heartbeat_s),
            load=NodeLoad(r.frames_per_s, r.fail_rate, r.error_rate),
            heartbeat_at=r.heartbeat_at,
            stations=by_node.get(r.node_id, []),
        )
        for r in rows
    ]
