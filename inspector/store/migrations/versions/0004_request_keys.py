"""Idempotency keys of inspections: a resent frame is answered from its record.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("request_key", sa.String(128), nullable=True))
        batch.create_unique_constraint("uq_inspections_station_request_key",
                                       ["station", "request_key"])


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_constraint("uq_inspections_station_request_key", type_="unique")
        batch.drop_column("request_key")
