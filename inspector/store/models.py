"""Storage models (SQLAlchemy 2). Request/response schemas live in `inspector.server.schemas`.

Tables: inspections (one row per verdict), reviews (QA labels), api_keys (hashed), outbox
(one row per verdict and destination until delivered), model_versions and
station_deployments (which package serves which station; the registry builds on these),
shadow_results (what a shadow-deployed model said about a frame the active model judged).
Fleet tables (many nodes on one database): package_blobs and package_chunks (model package
archives by sha256), nodes (registration and heartbeat) and node_stations (what each node runs
at each station against the desired state, and why not), artifact_blobs (flagged frames'
image and heatmap, readable from any node).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: Auto-increment primary key: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Inspection(Base):
    __tablename__ = "inspections"

    #: Time-ordered hex id (48-bit ms timestamp + 80 random bits): sortable, unguessable.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    node: Mapped[str] = mapped_column(String(64))
    line: Mapped[str] = mapped_column(String(64))
    station: Mapped[str] = mapped_column(String(64))
    part_id: Mapped[str | None] = mapped_column(String(128))
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(8))
    label: Mapped[str | None] = mapped_column(String(64))
    frame_width: Mapped[int] = mapped_column(Integer)
    frame_height: Mapped[int] = mapped_column(Integer)
    queue_ms: Mapped[float] = mapped_column(Float)
    decode_ms: Mapped[float] = mapped_column(Float)
    inference_ms: Mapped[float] = mapped_column(Float)
    total_ms: Mapped[float] = mapped_column(Float)
    #: Artifact keys relative to the artifact root (server-made, never from user input).
    image_key: Mapped[str | None] = mapped_column(String(128))
    heatmap_key: Mapped[str | None] = mapped_column(String(128))
    artifact_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    #: unreviewed | defect | good: the latest review's label, kept here for filtering.
    review_state: Mapped[str] = mapped_column(String(16), default="unreviewed")
    #: The client's Idempotency-Key: a resent frame with the same key (per station) gets the
    #: recorded verdict back instead of a second record.
    request_key: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_inspections_station_created", "station", "created_at"),
        Index("ix_inspections_verdict_review", "verdict", "review_state"),
        UniqueConstraint("station", "request_key", name="uq_inspections_station_request_key"),
    )


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    inspection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(16))
    defect_type: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: Public part of the key (shown in lists and logs); the secret part is only hashed.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Comma-separated station names a camera key may post for; None = any station.
    stations: Mapped[str | None] = mapped_column(String(1024))


class UiSessionRow(Base):
    """A sign-in to the review pages; signing out sets `revoked_at` (server-side revocation)."""

    __tablename__ = "ui_sessions"

    #: Random session id carried in the signed cookie.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxEvent(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(64))
    #: `mqtt` or `webhook:<name>`.
    destination: Mapped[str] = mapped_column(String(80))
    inspection_id: Mapped[str] = mapped_column(String(32))
    #: MQTT topic (or event name for webhooks) and the JSON payload, fixed at commit time.
    topic: Mapped[str] = mapped_column(String(256))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: pending | dead (a webhook that exhausted its attempts; kept for inspection).
    state: Mapped[str] = mapped_column(String(8), default="pending")

    __table_args__ = (
        Index("ix_outbox_due", "node", "destination", "state", "next_attempt_at"),
    )


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    onnx_sha256: Mapped[str] = mapped_column(String(64))
    card_json: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: sha256 of the package archive in the package store (any node can fetch it); None when
    #: the version was recorded without sharing it (single node on SQLite).
    package_sha256: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_versions_name_version"),)


class StationDeployment(Base):
    """History of which model serves a station; current rows have `retired_at` NULL."""

    __tablename__ = "station_deployments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    station: Mapped[str] = mapped_column(String(64), index=True)
    #: active (answers the camera) | shadow (runs alongside and records scores only: a
    #: candidate compared on live frames).
    mode: Mapped[str] = mapped_column(String(8))
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_by: Mapped[str] = mapped_column(String(64))
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ShadowResult(Base):
    """A shadow model's judgement of a frame, beside the active verdict it never changed."""

    __tablename__ = "shadow_results"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    inspection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("inspections.id", ondelete="CASCADE"), index=True
    )
    station: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The active model's answer (copied from the inspection so reports need no join).
    active_name: Mapped[str] = mapped_column(String(64))
    active_version: Mapped[str] = mapped_column(String(64))
    active_score: Mapped[float] = mapped_column(Float)
    active_verdict: Mapped[str] = mapped_column(String(8))
    shadow_name: Mapped[str] = mapped_column(String(64))
    shadow_version: Mapped[str] = mapped_column(String(64))
    shadow_score: Mapped[float] = mapped_column(Float)
    shadow_threshold: Mapped[float] = mapped_column(Float)
    shadow_verdict: Mapped[str] = mapped_column(String(8))
    shadow_label: Mapped[str | None] = mapped_column(String(64))
    #: The shadow model's share of its batch's run time.
    shadow_ms: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_shadow_results_station_model", "station", "shadow_name", "shadow_version",
              "created_at"),
    )


class PackageBlob(Base):
    """One package archive in the database package store, stored once per sha256."""

    __tablename__ = "package_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PackageChunk(Base):
    """A slice of a package archive: rows of a few MiB keep every value far below
    PostgreSQL's bytea limit and let readers stream without holding the whole archive."""

    __tablename__ = "package_chunks"

    sha256: Mapped[str] = mapped_column(
        String(64), ForeignKey("package_blobs.sha256", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (PrimaryKeyConstraint("sha256", "seq"),)


class NodeRow(Base):
    """A server in the fleet: what it is, what it serves, and its latest heartbeat."""

    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    line: Mapped[str] = mapped_column(String(64))
    base_url: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    #: Where inference runs and how (provider, concurrent calls, threads per call).
    plan: Mapped[str] = mapped_column(String(256))
    #: JSON list of the stations it follows; null = every station.
    serves: Mapped[str | None] = mapped_column(Text)
    #: JSON list of the models it has loaded (name:version).
    models: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The node's own heartbeat interval: staleness is judged against it.
    heartbeat_s: Mapped[float] = mapped_column(Float)
    frames_per_s: Mapped[float] = mapped_column(Float, default=0.0)
    fail_rate: Mapped[float] = mapped_column(Float, default=0.0)
    error_rate: Mapped[float] = mapped_column(Float, default=0.0)


class NodeStation(Base):
    """The outcome of a node's last reconcile of one station and mode."""

    __tablename__ = "node_stations"

    node_id: Mapped[str] = mapped_column(String(64))
    station: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8))
    desired: Mapped[str | None] = mapped_column(String(130))
    running: Mapped[str | None] = mapped_column(String(130))
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (PrimaryKeyConstraint("node_id", "station", "mode"),)


class ArtifactBlob(Base):
    """A stored artifact's bytes, for nodes that did not judge the frame (fleet storage)."""

    __tablename__ = "artifact_blobs"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    inspection_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("inspections.id", ondelete="CASCADE"), index=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
