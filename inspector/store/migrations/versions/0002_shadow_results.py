"""Shadow results: what a shadow-deployed model said about each frame the active one judged.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shadow_results",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "inspection_id",
            sa.String(32),
            sa.ForeignKey("inspections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("active_name", sa.String(64), nullable=False),
        sa.Column("active_version", sa.String(64), nullable=False),
        sa.Column("active_score", sa.Float, nullable=False),
        sa.Column("active_verdict", sa.String(8), nullable=False),
        sa.Column("shadow_name", sa.String(64), nullable=False),
        sa.Column("shadow_version", sa.String(64), nullable=False),
        sa.Column("shadow_score", sa.Float, nullable=False),
        sa.Column("shadow_threshold", sa.Float, nullable=False),
        sa.Column("shadow_verdict", sa.String(8), nullable=False),
        sa.Column("shadow_label", sa.String(64)),
        sa.Column("shadow_ms", sa.Float, nullable=False),
    )
    op.create_index("ix_shadow_results_inspection_id", "shadow_results", ["inspection_id"])
    op.create_index(
        "ix_shadow_results_station_model",
        "shadow_results",
        ["station", "shadow_name", "shadow_version", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("shadow_results")
