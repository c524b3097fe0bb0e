"""The ingress's PostgreSQL fallback for its Redis state: idempotency records, accepted markers.

Only written while Redis is unavailable, so a reused `Idempotency-Key` with another body is
still `409` and a fresh command's status URL still answers `accepted`.

Revision ID: 0006_ingress_fallback
Revises: 0005_command_body_hash
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_ingress_fallback"
down_revision = "0005_command_body_hash"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingress_idempotency",
        sa.Column("command_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("body_sha256", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ingress_idempotency_expires", "ingress_idempotency", ["expires_at"])
    op.create_table(
        "ingress_accepted",
        sa.Column("command_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ingress_accepted_expires", "ingress_accepted", ["expires_at"])


def downgrade() -> None:
    op.drop_table("ingress_accepted")
    op.drop_table("ingress_idempotency")
