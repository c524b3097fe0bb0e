"""Durable timers (`infra.scheduler.timers`): what is due when, and what cancels it.

A unit of work only inserts or upserts rows, so both halves are writes of that kind:

- `timers`: one row per key. Scheduling a key again replaces its row while it has not
  fired (the conflict rule), and `scheduled_at` is set anew; a fired row is never replaced,
  so a redelivered message cannot arm a timer twice. The scheduler sets `fired_at` (and the
  sent command's id) in the transaction that writes the command's outbox row, or
  `cancelled_at` when it finds a due timer cancelled.
- `timer_cancellations`: one row per cancel of a group. It cancels the group's timers
  scheduled before it (`infra.scheduler.timers.cancels`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Index, text

from infra.db.table import Column, Conflict, Table
from infra.db.tables import metadata, sql_table

if TYPE_CHECKING:
    from collections.abc import Mapping


def _unfired(stored: Mapping[str, Any], _new: Mapping[str, Any]) -> bool:
    return stored["fired_at"] is None


TIMERS = Table(
    "timers",
    (
        Column("key", "text", nullable=False, primary_key=True),
        Column("timer_group", "text", nullable=False),  # what `cancel(group=...)` names
        Column("due_at", "timestamptz", nullable=False),
        Column("type", "text", nullable=False),  # the command's catalog type and version
        Column("version", "int", nullable=False),
        Column("data", "jsonb", nullable=False),
        Column("correlation_id", "uuid", nullable=False),  # the scheduling unit's context
        Column("causation_id", "uuid"),
        Column("traceparent", "text"),
        Column("cancelled_at", "timestamptz"),  # written NULL: a new schedule is live again
        Column("scheduled_at", "timestamptz", nullable=False, written=False, default="now()"),
        Column("fired_at", "timestamptz", written=False),
        Column("command_id", "uuid", written=False),  # the envelope id of the sent command
        Column("problem", "text", written=False),  # why a due timer sent nothing, if it did not
    ),
    Conflict(
        key=("key",),
        replace=True,
        touch=("scheduled_at",),
        where="timers.fired_at IS NULL",
        allows=_unfired,
    ),
)

TIMER_CANCELLATIONS = Table(
    "timer_cancellations",
    (
        Column("seq", "bigserial", nullable=False, written=False, primary_key=True),
        Column("timer_group", "text", nullable=False),
        Column("causation_id", "uuid"),  # the cancelling unit's cause (ties in the same instant)
        Column("cancelled_at", "timestamptz", nullable=False, written=False, default="now()"),
    ),
)

__all__ = ["TIMERS", "TIMER_CANCELLATIONS", "metadata", "timer_cancellations", "timers"]

timers = sql_table(
    TIMERS,
    # What the scheduler scans: only timers still waiting, in due order (as small as they are).
    Index(
        "timers_pending",
        "due_at",
        postgresql_where=text("fired_at IS NULL AND cancelled_at IS NULL"),
    ),
)
timer_cancellations = sql_table(
    TIMER_CANCELLATIONS,
    Index("timer_cancellations_group", "timer_group", "cancelled_at"),
)
