"""Current state of every aggregate, one row each; the command processor keeps it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from infra.db.tables import metadata

# Repositories map a row to an aggregate explicitly (`state` <-> the aggregate's fields).
# `version` is the optimistic-concurrency column: an UPDATE names the version it read.
aggregate_state = Table(
    "aggregate_state",
    metadata,
    Column("aggregate_type", Text, nullable=False),
    Column("aggregate_id", UUID(as_uuid=True), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("aggregate_type", "aggregate_id", name="aggregate_state_pkey"),
    # List endpoints page by (type, created_at, id) and filter on a few state fields.
    Index("aggregate_state_listing", "aggregate_type", "created_at", "aggregate_id"),
    Index(
        "aggregate_state_project",
        "aggregate_type",
        text("(state ->> 'project_id')"),
    ),
    Index("aggregate_state_status", "aggregate_type", text("(state ->> 'status')")),
)
