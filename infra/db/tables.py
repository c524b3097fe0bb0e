"""Tables of the system of record (SQLAlchemy Core). Migrations create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

# The outbox. Once a row is published it *is* the event log: never updated again.
# `seq` is the insert order (used to claim); `position` is the gap-free log order, written
# only by the relay; `prev_hash`/`hash` chain every row to the one before it.
outbox = Table(
    "outbox",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
    Column("type", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("aggregate_type", Text),
    Column("aggregate_id", UUID(as_uuid=True)),
    Column("aggregate_version", BigInteger),
    Column("correlation_id", UUID(as_uuid=True), nullable=False),
    Column("causation_id", UUID(as_uuid=True)),
    Column("actor", JSONB, nullable=False),
    Column("traceparent", Text),
    Column("data", JSONB, nullable=False),
    Column("exchange", Text, nullable=False),
    Column("routing_key", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("position", BigInteger, unique=True),
    Column("prev_hash", LargeBinary),
    Column("hash", LargeBinary),
    Column("published_at", DateTime(timezone=True)),
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
)

# The inbox: one row per (consumer, message) already applied; the primary key makes a
# redelivered message a no-op inside the consumer's own transaction.
inbox = Table(
    "inbox",
    metadata,
    Column("consumer", Text, nullable=False),
    Column("message_id", UUID(as_uuid=True), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "message_id", name="inbox_pkey"),
)

# What became of each command, for `GET /v1/commands/{id}`.
command_status = Table(
    "command_status",
    metadata,
    Column("command_id", UUID(as_uuid=True), primary_key=True),
    Column("type", Text, nullable=False),
    Column("status", Text, nullable=False),  # accepted | failed | processed | rejected
    Column("result_event_ids", ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"),
    Column("problem", JSONB),
    Column("correlation_id", UUID(as_uuid=True)),
    Column("actor", JSONB),
    Column("body_sha256", Text),  # events.envelope.body_sha256 of the command
    Column("accepted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
