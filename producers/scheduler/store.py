"""The scheduler's SQL: fire a batch of due timers in one transaction, arm periodic jobs.

`fire_due` is the exactly-once step. In ONE transaction it locks up to `limit` due timers
that have neither fired nor been found cancelled (`FOR UPDATE SKIP LOCKED`, through the
partial index `timers_pending`), writes the outbox rows of their commands (the OUTBOX
description's batched insert), marks each timer fired (with its command's id) or
cancelled, and arms the next occurrence of any periodic job among them. A timer is locked
by one transaction at a time and is no longer pending once that one commits, so two
schedulers running at once (a leader and a deposed one still finishing) never fire a timer
twice; a transaction that fails writes nothing and leaves its timers pending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.db.outbox import outbox_row
from infra.db.tables import OUTBOX
from infra.db.timer_tables import TIMER_CANCELLATIONS, TIMERS
from infra.scheduler.firing import Firing, fire
from infra.scheduler.timers import CANCELLED_SQL

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    import asyncpg

    from infra.clock import Clock
    from infra.scheduler.periodic import PeriodicJobs

_PENDING = "t.fired_at IS NULL AND t.cancelled_at IS NULL"
_COLUMNS = "t.key, t.timer_group, t.due_at, t.type, t.version, t.data, t.correlation_id,"
_DUE_SQL = (
    f"SELECT {_COLUMNS} t.causation_id, t.traceparent, {CANCELLED_SQL} AS cancelled"  # noqa: S608
    f" FROM {TIMERS.name} t WHERE {_PENDING} AND t.due_at <= $1"
    " ORDER BY t.due_at LIMIT $2 FOR UPDATE OF t SKIP LOCKED"
)
_MARK_SQL = (
    f"UPDATE {TIMERS.name} t SET fired_at = m.fired_at, cancelled_at = m.cancelled_at,"  # noqa: S608
    " command_id = m.command_id, problem = m.problem"
    " FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::uuid[], $5::text[])"
    " AS m(key, fired_at, cancelled_at, command_id, problem)"
    f" WHERE t.key = m.key AND {_PENDING}"
)
_OUTBOX_SQL = OUTBOX.insert_sql(1)
_TIMERS_SQL = TIMERS.insert_sql(1)
_NEXT_DUE_SQL = f"SELECT min(due_at) FROM {TIMERS.name} t WHERE {_PENDING}"  # noqa: S608
# A cancellation still matters while a pending timer of its group was scheduled before it.
_PRUNE_SQL = (
    f"DELETE FROM {TIMER_CANCELLATIONS.name} c WHERE c.cancelled_at < $1"  # noqa: S608
    f" AND NOT EXISTS (SELECT 1 FROM {TIMERS.name} t WHERE {_PENDING}"
    " AND t.timer_group = c.timer_group AND t.scheduled_at <= c.cancelled_at)"
)
_ARMED_SQL = (
    f"SELECT DISTINCT timer_group FROM {TIMERS.name} t"  # noqa: S608
    f" WHERE {_PENDING} AND t.timer_group = ANY($1::text[])"
)


class TimerStore:
    """Due timers on one asyncpg connection (the leader's: it holds the lock)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def fire_due(
        self, now: datetime, limit: int, *, clock: Clock, jobs: PeriodicJobs
    ) -> Firing:
        """Fire up to `limit` timers due at `now`, in one transaction; what it wrote."""
        async with self._connection.transaction():
            due = await self._connection.fetch(_DUE_SQL, now, limit)
            firing = fire([dict(row) for row in due], now=now, clock=clock, jobs=jobs)
            if firing.envelopes:
                rows = [outbox_row(envelope) for envelope in firing.envelopes]
                await self._connection.execute(_OUTBOX_SQL, *OUTBOX.arrays(rows))
            if firing.marks:
                marks = firing.marks
                await self._connection.execute(
                    _MARK_SQL,
                    [m.key for m in marks],
                    [m.fired_at for m in marks],
                    [m.cancelled_at for m in marks],
                    [m.command_id for m in marks],
                    [m.problem for m in marks],
                )
            await self.add_timers(firing.following)
        return firing

    async def add_timers(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write `timers` rows (the table's conflict rule: a fired key stays as it is)."""
        if rows:
            await self._connection.execute(_TIMERS_SQL, *TIMERS.arrays(list(rows)))

    async def next_due(self) -> datetime | None:
        """When the earliest pending timer is due, if any."""
        due: datetime | None = await self._connection.fetchval(_NEXT_DUE_SQL)
        return due

    async def armed(self, groups: Sequence[str]) -> set[str]:
        """Which of `groups` have a pending timer."""
        rows = await self._connection.fetch(_ARMED_SQL, list(groups))
        return {row[0] for row in rows}

    async def prune_cancellations(self, before: datetime) -> int:
        """Delete cancellations older than `before` that cancel no pending timer; how many."""
        status = await self._connection.execute(_PRUNE_SQL, before)
        return int(status.rsplit(" ", 1)[-1])
