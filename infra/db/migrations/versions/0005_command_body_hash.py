"""`command_status.body_sha256`: which body a command's outcome is for.

With it the ingress can answer a reused `Idempotency-Key` with a different body `409` from
PostgreSQL once the first command is recorded, also while its Redis is down.

Revision ID: 0005_command_body_hash
Revises: 0004_expect_written
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_command_body_hash"
down_revision = "0004_expect_written"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("command_status", sa.Column("body_sha256", sa.Text()))


def downgrade() -> None:
    op.drop_column("command_status", "body_sha256")
