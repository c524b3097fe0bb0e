"""Durable timers: schedule a command for later, or cancel a group, inside a unit of work.

A handler calls `schedule` or `cancel` with its unit of work; the timer (or cancellation)
row is written by the unit's commit, in the same transaction as the rest of the unit, or not
at all. The scheduler (`producers.scheduler`) later writes the timer's command into the
outbox in the transaction that marks the timer fired, so a timer fires exactly once and the
relay publishes its command like any other.

Guarantees, by row:

- A key is one timer. Scheduling it again (a later unit, a redelivery) replaces it while it
  has not fired: the last schedule's due time and command win. A fired key is never armed
  again, so a redelivered message cannot send its timer's command twice.
- `cancel(group)` cancels the group's timers scheduled before it: in earlier units, judged
  by the database's clock at each commit (`cancels`). Timers the same unit schedules stay
  live (a handler may cancel a group and arm it anew in one unit); a timer scheduled again
  after a cancellation is live again. A cancellation committed while the scheduler is firing
  that very timer may come too late: the command is sent (the domain refuses what is late).
- A fired command's envelope: actor `system:scheduler`, the scheduling unit's correlation
  id, causation id (the message being handled) and traceparent.

Timers carry commands only (an event needs its aggregate's version); system-only commands
such as `ExpirePlan` are fine: the scheduler is a system actor.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from events import Actor, Command, catalog
from infra.db.timer_tables import TIMER_CANCELLATIONS, TIMERS
from infra.message_context import MessageContext

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from infra.db.uow import UnitOfWork

__all__ = [
    "CANCELLED_SQL",
    "SCHEDULER_ACTOR",
    "TIMERS",
    "TIMER_CANCELLATIONS",
    "cancel",
    "cancels",
    "command_of",
    "fired_context",
    "is_cancelled",
    "schedule",
    "timer_row",
]

SCHEDULER_ACTOR = Actor.system("scheduler")

# `cancels` in SQL, for a timer `t`: is there a cancellation of its group after it?
CANCELLED_SQL = (
    f"EXISTS (SELECT 1 FROM {TIMER_CANCELLATIONS.name} c"  # noqa: S608  (fixed names)
    " WHERE c.timer_group = t.timer_group AND (c.cancelled_at > t.scheduled_at"
    " OR (c.cancelled_at = t.scheduled_at AND c.causation_id IS DISTINCT FROM t.causation_id)))"
)


def schedule(uow: UnitOfWork, *, key: str, due: datetime, command: Command, group: str) -> None:
    """At `due`, send `command` through the outbox, once; written with the unit's commit.

    `key` names the timer (scheduling it again replaces it until it fires); `group` is what
    `cancel` names. The causal context is the unit's (`uow.context`), read now.
    """
    uow.rows.add(
        TIMERS, timer_row(key=key, due=due, command=command, group=group, context=_context(uow))
    )


def timer_row(
    *, key: str, due: datetime, command: Command, group: str, context: MessageContext
) -> tuple[Any, ...]:
    """The `timers` row (`TIMERS.written`) of a live timer sending `command` at `due`."""
    entry = catalog.entry_for(command)
    if entry.kind != "command":
        raise TypeError(f"{entry.type} is an event: timers carry commands only")
    if due.tzinfo is None or due.utcoffset() is None:
        raise ValueError("a timer's due time must be timezone-aware")
    if not key or not group:
        raise ValueError("a timer needs a key and a group")
    return (
        key,
        group,
        due,
        entry.type,
        entry.version,
        command.model_dump_json(),
        context.correlation_id,
        context.causation_id,
        context.resolved_traceparent(),
        None,  # not cancelled: a schedule is live until a later cancellation
    )


def cancel(uow: UnitOfWork, *, group: str) -> None:
    """Cancel every unfired timer of `group` scheduled before this unit; with its commit."""
    if not group:
        raise ValueError("cancel needs a group")
    uow.rows.add(TIMER_CANCELLATIONS, (group, _context(uow).causation_id))


def _context(uow: UnitOfWork) -> MessageContext:
    if uow.context is None:
        raise RuntimeError("set the unit's context first: a timer keeps its causal context")
    return uow.context


def cancels(cancellation: Mapping[str, Any], timer: Mapping[str, Any]) -> bool:
    """Whether `cancellation` cancels `timer` (`CANCELLED_SQL` in Python, for the fakes).

    It does if it is of the timer's group and was committed after the timer was scheduled:
    later, or at the same instant by another unit (another cause).
    """
    if cancellation["timer_group"] != timer["timer_group"]:
        return False
    cancelled_at, scheduled_at = cancellation["cancelled_at"], timer["scheduled_at"]
    return bool(
        cancelled_at > scheduled_at
        or (cancelled_at == scheduled_at and cancellation["causation_id"] != timer["causation_id"])
    )


def is_cancelled(timer: Mapping[str, Any], cancellations: Iterable[Mapping[str, Any]]) -> bool:
    """Whether any of `cancellations` cancels `timer`."""
    return any(cancels(cancellation, timer) for cancellation in cancellations)


def command_of(timer: Mapping[str, Any]) -> Command:
    """The command a timer row sends (upcast to its current version)."""
    data = timer["data"]
    if isinstance(data, str):  # JSON text: a row read without a JSON codec, or not yet stored
        data = json.loads(data)
    command = catalog.parse_data(timer["type"], timer["version"], data)
    if not isinstance(command, Command):
        raise TypeError(f"timer {timer['key']} holds {timer['type']}, not a command")
    return command


def fired_context(timer: Mapping[str, Any]) -> MessageContext:
    """The context a fired timer's command is sent with: the scheduler, the unit's cause."""
    return MessageContext(
        correlation_id=timer["correlation_id"],
        causation_id=timer["causation_id"],
        actor=SCHEDULER_ACTOR,
        traceparent=timer["traceparent"],
    )
