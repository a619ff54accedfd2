"""Initial schema: inspections, reviews, API keys, outbox, model versions, station deployments.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("line", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("part_id", sa.String(128)),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("label", sa.String(64)),
        sa.Column("frame_width", sa.Integer, nullable=False),
        sa.Column("frame_height", sa.Integer, nullable=False),
        sa.Column("queue_ms", sa.Float, nullable=False),
        sa.Column("decode_ms", sa.Float, nullable=False),
        sa.Column("inference_ms", sa.Float, nullable=False),
        sa.Column("total_ms", sa.Float, nullable=False),
        sa.Column("image_key", sa.String(128)),
        sa.Column("heatmap_key", sa.String(128)),
        sa.Column("artifact_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("review_state", sa.String(16), nullable=False, server_default="unreviewed"),
    )
    op.create_index("ix_inspections_created_at", "inspections", ["created_at"])
    op.create_index("ix_inspections_station_created", "inspections", ["station", "created_at"])
    op.create_index("ix_inspections_verdict_review", "inspections", ["verdict", "review_state"])

    op.create_table(
        "reviews",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "inspection_id",
            sa.String(32),
            sa.ForeignKey("inspections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("defect_type", sa.String(64)),
        sa.Column("note", sa.Text),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_reviews_inspection_id", "reviews", ["inspection_id"])
    op.create_index("ix_reviews_created_at", "reviews", ["created_at"])

    op.create_table(
        "api_keys",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )

    op.create_table(
        "outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(80), nullable=False),
        sa.Column("inspection_id", sa.String(32), nullable=False),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("state", sa.String(8), nullable=False, server_default="pending"),
    )
    op.create_index(
        "ix_outbox_due", "outbox", ["node", "destination", "state", "next_attempt_at"]
    )

    op.create_table(
        "model_versions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("onnx_sha256", sa.String(64), nullable=False),
        sa.Column("card_json", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        sa.UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
    )

    op.create_table(
        "station_deployments",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("deployed_at", TS, nullable=False),
        sa.Column("deployed_by", sa.String(64), nullable=False),
        sa.Column("retired_at", TS),
    )
    op.create_index("ix_station_deployments_station", "station_deployments", ["station"])


def downgrade() -> None:
    for table in (
        "station_deployments", "model_versions", "outbox", "api_keys", "reviews", "inspections"
    ):
        op.drop_table(table)
