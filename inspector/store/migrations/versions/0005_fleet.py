"""Fleet: shared package store, node registry and reconcile outcomes, shared artifacts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("package_sha256", sa.String(64), nullable=True))
    op.create_table(
        "package_blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "package_chunks",
        sa.Column("sha256", sa.String(64),
                  sa.ForeignKey("package_blobs.sha256", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("sha256", "seq"),
    )
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("line", sa.String(64), nullable=False),
        sa.Column("base_url", sa.String(256), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("plan", sa.String(256), nullable=False),
        sa.Column("serves", sa.Text),
        sa.Column("models", sa.Text, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("heartbeat_s", sa.Float, nullable=False),
        sa.Column("frames_per_s", sa.Float, nullable=False),
        sa.Column("fail_rate", sa.Float, nullable=False),
        sa.Column("error_rate", sa.Float, nullable=False),
    )
    op.create_table(
        "node_stations",
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("desired", sa.String(130)),
        sa.Column("running", sa.String(130)),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("node_id", "station", "mode"),
    )
    op.create_table(
        "artifact_blobs",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("inspection_id", sa.String(32),
                  sa.ForeignKey("inspections.id", ondelete="CASCADE"), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_artifact_blobs_inspection_id", "artifact_blobs", ["inspection_id"])


def downgrade() -> None:
    op.drop_table("artifact_blobs")
    op.drop_table("node_stations")
    op.drop_table("nodes")
    op.drop_table("package_chunks")
    op.drop_table("package_blobs")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("package_sha256")
