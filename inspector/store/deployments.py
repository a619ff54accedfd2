"""Model versions the server knows and which one serves each station (active or shadow).

The server registers every package it loads; a deploy writes a row and retires the previous
one for that station and mode, so the history stays (rollback and audit build on it). The
current rows are the fleet's desired state: every node sharing the database reconciles the
stations it serves to them (inspector.lifecycle.reconciler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import desc, select, update

from inspector.core.names import ModelRef, utcnow
from inspector.store import changes as changes_module
from inspector.store.db import Database
from inspector.store.models import ModelVersion, StationDeployment


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


def apply(
    db: Database,
    station: str,
    deployed_by: str,
    changes: dict[str, ModelRef | None],
    configured_active: ModelRef | None = None,
) -> None:
    """Change several modes of one station at once (a promote retires the shadow and replaces
    the active in one transaction): mode -> model, or None to retire that mode.

    `configured_active` is the model that answered the station from settings (no deployment
    row); when the active changes it is written to the history as retired, so rollback after
    a restart knows it."""
    now = utcnow()
    with db.session() as s:
        if configured_active is not None and "active" in changes:
            current = s.scalar(select(StationDeployment.id).where(
                StationDeployment.station == station, StationDeployment.mode == "active",
                StationDeployment.retired_at.is_(None)))
            if current is None:
                s.add(StationDeployment(station=station, mode="active",
                                        model_name=configured_active.name,
                                        model_version=configured_active.version, deployed_at=now,
                                        deployed_by="settings", retired_at=now))
        for mode, target in changes.items():
            s.execute(
                update(StationDeployment)
                .where(StationDeployment.station == station, StationDeployment.mode == mode,
                       StationDeployment.retired_at.is_(None))
                .values(retired_at=now)
            )
            if target is not None:
                s.add(StationDeployment(station=station, mode=mode, model_name=target.name,
                                        model_version=target.version, deployed_at=now,
                                        deployed_by=deployed_by))
        changes_module.notify(s, station)  # every node hears of it when this commits


def previous_active(db: Database, station: str) -> ModelRef | None:
    """The model that was active at `station` before the current one (the rollback target)."""
    with db.session() as s:
        rows = s.execute(
            select(StationDeployment.model_name, StationDeployment.model_version,
                   StationDeployment.retired_at)
            .where(StationDeployment.station == station, StationDeployment.mode == "active")
            .order_by(desc(StationDeployment.id))
            .limit(50)
        ).all()
    current = next(((n, v) for n, v, retired in rows if retired is None), None)
    for name, version, retired in rows:
        if retired is not None and (name, version) != current:
            return ModelRef(name, version)
    return None


def _version_field(db: Database, column: Any, name: str, version: str) -> Any:
    with db.session() as s:
        return s.scalar(select(column).where(ModelVersion.name == name,
                                             ModelVersion.version == version))


def model_card_json(db: Database, name: str, version: str) -> str | None:
    """The card (JSON text) recorded for a version; None when it was never registered."""
    return cast(str | None, _version_field(db, ModelVersion.card_json, name, version))


def model_version_path(db: Database, name: str, version: str) -> str | None:
    """Where a registered version's package lives on the node that registered it (None when
    it was never registered)."""
    return cast(str | None, _version_field(db, ModelVersion.path, name, version))


def model_version_sha(db: Database, name: str, version: str) -> str | None:
    """The checksum recorded for a version (a name:version always means one model)."""
    return cast(str | None, _version_field(db, ModelVersion.onnx_sha256, name, version))


def package_sha(db: Database, name: str, version: str) -> str | None:
    """The sha256 of the version's archive in the package store (None: not shared)."""
    return cast(str | None, _version_field(db, ModelVersion.package_sha256, name, version))


def set_package_sha(db: Database, name: str, version: str, sha256: str) -> None:
    """Record where the version's archive is in the package store."""
    with db.session() as s:
        s.execute(update(ModelVersion)
                  .where(ModelVersion.name == name, ModelVersion.version == version)
                  .values(package_sha256=sha256))


def registered_versions(db: Database, name: str) -> list[ModelRef]:
    """Every recorded version of a model, oldest first."""
    with db.session() as s:
        rows = s.execute(select(ModelVersion.name, ModelVersion.version)
                         .where(ModelVersion.name == name).order_by(ModelVersion.id)).all()
    return [ModelRef(n, v) for n, v in rows]


def desired(db: Database, station: str, mode: str) -> ModelRef | None:
    """The model the fleet should run at `station` in `mode` (None: no deployment)."""
    with db.session() as s:
        row = s.execute(select(StationDeployment.model_name, StationDeployment.model_version)
                        .where(StationDeployment.station == station,
                               StationDeployment.mode == mode,
                               StationDeployment.retired_at.is_(None))
                        .order_by(desc(StationDeployment.id)).limit(1)).first()
    return None if row is None else ModelRef(row[0], row[1])
