"""Tables of the system of record, described once (`infra.db.table`); SQLAlchemy Core from that.

The outbox, inbox, command status and held-message tables are `Table` descriptions: the
unit of work's commit statement, the row builders, the relay's and the event log's queries
derive from them, and so do the SQLAlchemy tables here (which the migrations are checked
against). Adding a column is one edit here plus a migration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy import Column as SqlColumn
from sqlalchemy import Table as SqlTable
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from infra.db.table import Column, Conflict, Table

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.schema import SchemaItem
    from sqlalchemy.sql.elements import ColumnElement, TextClause
    from sqlalchemy.types import TypeEngine

metadata = MetaData()

# The outbox. Once a row is published it *is* the event log: never updated again.
# `seq` is the insert order (used to claim); `position` is the gap-free log order, written
# only by the relay; `prev_hash`/`hash` chain every row to the one before it. The written
# columns are the envelope's fields of the same names, then its address (`exchange`,
# `routing_key`) and what readers filter on without parsing `data` (`kind`, `project_id`);
# the chain covers the envelope only.
OUTBOX = Table(
    "outbox",
    (
        Column("id", "uuid", nullable=False, primary_key=True),
        Column("seq", "bigint", nullable=False, written=False, unique=True, identity=True),
        Column("type", "text", nullable=False),
        Column("version", "int", nullable=False),
        Column("occurred_at", "timestamptz", nullable=False),
        Column("aggregate_type", "text"),
        Column("aggregate_id", "uuid"),
        Column("aggregate_version", "bigint"),
        Column("correlation_id", "uuid", nullable=False),
        Column("causation_id", "uuid"),
        Column("actor", "jsonb", nullable=False),
        Column("traceparent", "text"),
        Column("data", "jsonb", nullable=False),
        Column("exchange", "text", nullable=False),
        Column("routing_key", "text", nullable=False),
        Column("kind", "text", nullable=False, default="'event'"),  # the catalog's: event | command
        Column("project_id", "uuid"),  # the payload's `project_id`, if it has one
        Column("recorded_at", "timestamptz", nullable=False, written=False, default="now()"),
        Column("position", "bigint", written=False, unique=True),
        Column("prev_hash", "bytea", written=False),
        Column("hash", "bytea", written=False),
        Column("published_at", "timestamptz", written=False),
    ),
)

# The relay's link of the hash chain (infra.eventlog.chain), set when it positions a row.
CHAIN_COLUMNS = ("position", "prev_hash", "hash")

# The inbox: one row per (consumer, message) already applied; a second claim is left out.
INBOX = Table(
    "inbox",
    (
        Column("consumer", "text", nullable=False, primary_key=True),
        Column("message_id", "uuid", nullable=False, primary_key=True),
        Column("processed_at", "timestamptz", nullable=False, written=False, default="now()"),
    ),
    Conflict(key=("consumer", "message_id")),
)

DECIDED = ("processed", "rejected")


def _moves_forward(stored: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return stored["status"] not in DECIDED and (
        new["status"] != "accepted" or stored["status"] == "accepted"
    )


# What became of each command, for `GET /v1/commands/{id}`. An outcome only moves forward:
# accepted -> failed -> processed | rejected. A decided command (processed, rejected) is never
# marked failed (a copy of it parked later), nor is a failed one marked accepted again; a
# re-drive that succeeds replaces `failed`. `accepted_at` is never replaced.
COMMAND_STATUS = Table(
    "command_status",
    (
        Column("command_id", "uuid", nullable=False, primary_key=True),
        Column("type", "text", nullable=False),
        Column("status", "text", nullable=False),  # accepted | failed | processed | rejected
        Column("result_event_ids", "uuid[]", nullable=False, default="'{}'"),
        Column("problem", "jsonb"),
        Column("correlation_id", "uuid"),
        Column("actor", "jsonb"),
        Column("body_sha256", "text"),  # events.envelope.body_sha256 of the command
        Column("accepted_at", "timestamptz", nullable=False, written=False, default="now()"),
        Column("updated_at", "timestamptz", nullable=False, written=False, default="now()"),
    ),
    Conflict(
        key=("command_id",),
        replace=True,
        touch=("updated_at",),
        where=(
            f"command_status.status NOT IN ('{DECIDED[0]}', '{DECIDED[1]}')"
            " AND (excluded.status <> 'accepted' OR command_status.status = 'accepted')"
        ),
        allows=_moves_forward,
    ),
)

# Messages an ordered consumer holds back: parked ones, and later ones of the same partition
# waiting behind them (in `seq` order). A unit of work's `hold_guard` checks and releases them.
CONSUMER_HELD = Table(
    "consumer_held",
    (
        Column("consumer", "text", nullable=False, primary_key=True),
        Column("partition_key", "text", nullable=False, primary_key=True),
        Column("seq", "bigserial", nullable=False, written=False, primary_key=True),
        Column("message_id", "uuid", nullable=False),
        Column("parked", "boolean", nullable=False),
        Column("reason", "text", nullable=False),
        Column("body", "bytea", nullable=False),
        Column("headers", "jsonb", nullable=False, default="'{}'"),
        Column("held_at", "timestamptz", nullable=False, written=False, default="now()"),
    ),
)

# External effects of consumers, claimed before and recorded after (`infra.consumers.effects`).
CONSUMER_EFFECTS = Table(
    "consumer_effects",
    (
        Column("consumer", "text", nullable=False, primary_key=True),
        Column("message_id", "uuid", nullable=False, primary_key=True),
        Column("attempts", "int", nullable=False, written=False, default="1"),
        Column("state", "text", nullable=False),
        Column("outcome", "jsonb"),
        Column("claimed_at", "timestamptz", nullable=False, written=False, default="now()"),
        Column("done_at", "timestamptz", written=False),
    ),
    conflict=Conflict(key=("consumer", "message_id"), replace=True, touch=("done_at",)),
)

_TYPES: dict[str, TypeEngine[Any]] = {
    "uuid": UUID(as_uuid=True),
    "text": Text(),
    "int": Integer(),
    "bigint": BigInteger(),
    "bigserial": BigInteger(),
    "boolean": Boolean(),
    "timestamptz": DateTime(timezone=True),
    "jsonb": JSONB(),
    "bytea": LargeBinary(),
    "uuid[]": ARRAY(UUID(as_uuid=True)),
}


def _sql_column(column: Column, *, composite_key: bool) -> SqlColumn[Any]:
    extra: list[Any] = [Identity(always=True)] if column.identity else []
    default: ColumnElement[Any] | TextClause | None = None
    if column.default == "now()":
        default = func.now()
    elif column.default is not None:
        default = text(column.default)
    return SqlColumn(
        column.name,
        _TYPES[column.type],
        *extra,
        primary_key=column.primary_key and not composite_key,
        nullable=column.nullable,
        unique=column.unique or None,
        server_default=default,
        autoincrement=True if column.type == "bigserial" else "auto",
    )


def sql_table(table: Table, *extra: SchemaItem) -> SqlTable:
    """The SQLAlchemy table of a description (on `metadata`), with `extra` indexes."""
    keys = [column.name for column in table.columns if column.primary_key]
    composite = len(keys) > 1
    columns = [_sql_column(column, composite_key=composite) for column in table.columns]
    if composite:
        extra = (PrimaryKeyConstraint(*keys, name=f"{table.name}_pkey"), *extra)
    return SqlTable(table.name, metadata, *columns, *extra)


outbox = sql_table(
    OUTBOX,
    Index("outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
    Index(
        "outbox_aggregate",
        "aggregate_id",
        "aggregate_version",
        unique=True,
        postgresql_where=text("aggregate_id IS NOT NULL"),
    ),
    Index("outbox_type_position", "type", "position"),
    Index("outbox_correlation_position", "correlation_id", "position"),
    Index(
        "outbox_kind_position", "kind", "position", postgresql_where=text("position IS NOT NULL")
    ),
    Index(
        "outbox_project_position",
        "project_id",
        "position",
        postgresql_where=text("project_id IS NOT NULL"),
    ),
)
inbox = sql_table(INBOX)
command_status = sql_table(COMMAND_STATUS)
consumer_held = sql_table(
    CONSUMER_HELD,
    UniqueConstraint("consumer", "message_id", name="consumer_held_consumer_message_id_key"),
)
consumer_effects = sql_table(CONSUMER_EFFECTS)
