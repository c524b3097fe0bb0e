"""Current state of every aggregate, one row each; the command processor keeps it."""

from __future__ import annotations

from sqlalchemy import Index, text

from infra.db.table import Column, Conflict, Table
from infra.db.tables import metadata, sql_table

# Repositories map a row to an aggregate explicitly (`state` <-> the aggregate's fields).
# `version` is the optimistic-concurrency column: an UPDATE names the version it read; an
# insert of an id taken meanwhile is left out (the commit then fails as stale).
AGGREGATE_STATE = Table(
    "aggregate_state",
    (
        Column("aggregate_type", "text", nullable=False, primary_key=True),
        Column("aggregate_id", "uuid", nullable=False, primary_key=True),
        Column("version", "bigint", nullable=False),
        Column("state", "jsonb", nullable=False),
        Column("created_at", "timestamptz", nullable=False, written=False, default="now()"),
        Column("updated_at", "timestamptz", nullable=False, written=False, default="now()"),
    ),
    Conflict(key=("aggregate_type", "aggregate_id")),
)

__all__ = ["AGGREGATE_STATE", "aggregate_state", "metadata"]

aggregate_state = sql_table(
    AGGREGATE_STATE,
    # List endpoints page by (type, created_at, id) and filter on a few state fields.
    Index("aggregate_state_listing", "aggregate_type", "created_at", "aggregate_id"),
    Index("aggregate_state_project", "aggregate_type", text("(state ->> 'project_id')")),
    Index("aggregate_state_status", "aggregate_type", text("(state ->> 'status')")),
)
