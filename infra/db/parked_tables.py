"""Parked messages, one row per (consumer, message): what the parked-message console reads.

The consumer framework writes a row when it parks a message (`infra.consumers.parking`), in
the unit that records the parking, before the parked copy is published to `hisho.dead`; the
console (`infra.parked`) reads the rows and moves their `state` on. PostgreSQL is the source
of truth: the row keeps the body and headers, so a message is re-driven from here even when
its copy in the broker's parking queue is gone; the copy is a convenience the console
removes when it re-drives or discards.
"""

from __future__ import annotations

from sqlalchemy import Index

from infra.db.table import Column, Conflict, Table
from infra.db.tables import metadata, sql_table

PARKED = "parked"
REDRIVEN = "redriven"
DISCARDED = "discarded"
STATES = (PARKED, REDRIVEN, DISCARDED)

# A message parked again (a re-drive that failed again, a redelivered copy) replaces its row:
# parked again, with the new reason and time, `resolved_*` cleared.
PARKED_MESSAGES = Table(
    "parked_messages",
    (
        Column("consumer", "text", nullable=False, primary_key=True),
        Column("message_id", "text", nullable=False, primary_key=True),
        Column("routing_key", "text", nullable=False),
        Column("message_type", "text"),  # the envelope's type, when the body decodes
        Column("error_type", "text", nullable=False),  # the exception type (`x-hisho-parked-error`)
        Column("reason", "text", nullable=False),  # `x-hisho-parked-reason`
        Column("parked_at", "timestamptz", nullable=False),
        Column("body", "bytea", nullable=False),
        Column("headers", "jsonb", nullable=False, default="'{}'"),
        # Where a re-drive sends it: to this consumer alone (its queue, or partition exchange).
        Column("redrive_exchange", "text", nullable=False),
        Column("redrive_routing_key", "text", nullable=False),
        Column("parking_queue", "text", nullable=False),
        Column("state", "text", nullable=False, default="'parked'"),  # parked|redriven|discarded
        Column("resolved_at", "timestamptz"),
        Column("resolved_by", "text"),  # the principal who re-drove or discarded it
    ),
    Conflict(key=("consumer", "message_id"), replace=True),
)

__all__ = [
    "DISCARDED",
    "PARKED",
    "PARKED_MESSAGES",
    "REDRIVEN",
    "STATES",
    "metadata",
    "parked_messages",
]

parked_messages = sql_table(
    PARKED_MESSAGES,
    # The console lists by state in parking order, filtered by consumer and error type.
    Index("parked_messages_listing", "state", "parked_at", "consumer", "message_id"),
    Index("parked_messages_errors", "state", "consumer", "error_type"),
)
