"""Model versions the server knows and which one serves each station (active or shadow).

The server registers every package it loads; a deploy writes a row and retires the previous
one for that station and mode, so the history stays (rollback and audit build on it).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from inspector.store.db import Database
from inspector.store.models import ModelVersion, StationDeployment, utcnow


@dataclass(frozen=True)
class Deployment:
    station: str
    mode: str
    model_name: str
    model_version: str
    deployed_by: str


def register_model_version(
    db: Database, *, name: str, version: str, kind: str, sha256: str, card_json: str, path: str
) -> None:
    """Insert or refresh a model version (same name+version with a new checksum updates it)."""
    with db.session() as s:
        row = s.scalar(
            select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
        )
        if row is None:
            s.add(ModelVersion(name=name, version=version, kind=kind, onnx_sha256=sha256,
                               card_json=card_json, path=path, registered_at=utcnow()))
        elif row.onnx_sha256 != sha256 or row.path != path:
            row.onnx_sha256, row.card_json, row.path = sha256, card_json, path


def current_deployments(db: Database, mode: str = "active") -> list[Deployment]:
    """The deployment in force for every station that has one."""
    stmt = (
        select(StationDeployment)
        .where(StationDeployment.mode == mode, StationDeployment.retired_at.is_(None))
        .order_by(StationDeployment.station)
    )
    with db.session() as s:
        return [
            Deployment(r.station, r.mode, r.model_name, r.model_version, r.deployed_by)
            for r in s.scalars(stmt)
        ]


def deploy(db: Database, d: Deployment) -> None:
    """Make `d` the current deployment for its station and mode, retiring the previous one."""
    now = utcnow()
    with db.session() as s:
        s.execute(
            update(StationDeployment)
            .where(StationDeployment.station == d.station, StationDeployment.mode == d.mode,
                   StationDeployment.retired_at.is_(None))
            .values(retired_at=now)
        )
        s.add(StationDeployment(station=d.station, mode=d.mode, model_name=d.model_name,
                                model_version=d.model_version, deployed_at=now,
                                deployed_by=d.deployed_by))
