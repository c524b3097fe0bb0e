"""Aggregate state: one row per aggregate with an optimistic-concurrency version.

Revision ID: 0002_state
Revises: 0001_foundation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_state"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aggregate_state",
        sa.Column("aggregate_type", sa.Text(), nullable=False),
        sa.Column("aggregate_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("state", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("aggregate_type", "aggregate_id", name="aggregate_state_pkey"),
    )
    op.create_index(
        "aggregate_state_listing",
        "aggregate_state",
        ["aggregate_type", "created_at", "aggregate_id"],
    )
    op.create_index(
        "aggregate_state_project",
        "aggregate_state",
        ["aggregate_type", sa.text("(state ->> 'project_id')")],
    )
    op.create_index(
        "aggregate_state_status",
        "aggregate_state",
        ["aggregate_type", sa.text("(state ->> 'status')")],
    )


def downgrade() -> None:
    op.drop_table("aggregate_state")
