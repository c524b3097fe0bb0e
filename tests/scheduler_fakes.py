"""The scheduler's timers in memory: `FakeTimers` fires what fake units of work scheduled.

It implements `producers.scheduler.loop.Timers` over a `tests.fakes.FakeDatabase`, with the
PostgreSQL store's semantics: due, unfired, uncancelled timers in due order, judged
cancelled by `infra.scheduler.timers.cancels`, written as `infra.scheduler.firing.fire`
decides (commands into the fake outbox, marks on the rows, periodic jobs' next timers).
`fire_timers` is the one-liner for a consumer's test: fire everything due now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.db.timer_tables import TIMER_CANCELLATIONS, TIMERS
from infra.scheduler.firing import Firing, fire
from infra.scheduler.periodic import PeriodicJobs
from infra.scheduler.timers import is_cancelled

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from events import Envelope, Message
    from infra.clock import Clock
    from tests.fakes import FakeClock, FakeDatabase


class FakeTimers:
    """`Timers` over a fake database; `now` for rows it writes comes from `clock`."""

    def __init__(self, db: FakeDatabase, clock: FakeClock) -> None:
        self.db = db
        self.clock = clock

    def pending(self) -> list[dict[str, Any]]:
        """Timers neither fired nor found cancelled, in due order."""
        rows = self.db.table(TIMERS)
        waiting = [t for t in rows if t["fired_at"] is None and t["cancelled_at"] is None]
        return sorted(waiting, key=lambda t: t["due_at"])

    async def fire_due(
        self, now: datetime, limit: int, *, clock: Clock, jobs: PeriodicJobs
    ) -> Firing:
        """Fire up to `limit` timers due at `now`."""
        cancellations = self.db.table(TIMER_CANCELLATIONS)
        due = [
            {**t, "cancelled": is_cancelled(t, cancellations)}
            for t in self.pending()
            if t["due_at"] <= now
        ][:limit]
        firing = fire(due, now=now, clock=clock, jobs=jobs)
        self.db.envelopes.extend(firing.envelopes)
        stored = {t["key"]: t for t in self.db.table(TIMERS)}
        for mark in firing.marks:
            stored[mark.key].update(
                fired_at=mark.fired_at,
                cancelled_at=mark.cancelled_at,
                command_id=mark.command_id,
                problem=mark.problem,
            )
        await self.add_timers(firing.following)
        return firing

    async def add_timers(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write `timers` rows with the table's conflict rule."""
        for row in rows:
            self.db.insert(TIMERS, row, self.clock())

    async def next_due(self) -> datetime | None:
        """When the earliest pending timer is due, if any."""
        pending = self.pending()
        return pending[0]["due_at"] if pending else None

    async def armed(self, groups: Sequence[str]) -> set[str]:
        """Which of `groups` have a pending timer."""
        return {t["timer_group"] for t in self.pending()} & set(groups)

    async def prune_cancellations(self, before: datetime) -> int:
        """Delete cancellations older than `before` that cancel no pending timer."""
        rows = self.db.tables.get(TIMER_CANCELLATIONS.name, {})
        pending = self.pending()
        stale = [
            key
            for key, c in rows.items()
            if c["cancelled_at"] < before
            and not any(
                t["timer_group"] == c["timer_group"] and t["scheduled_at"] <= c["cancelled_at"]
                for t in pending
            )
        ]
        for key in stale:
            del rows[key]
        return len(stale)


async def fire_timers(
    db: FakeDatabase, clock: FakeClock, *, jobs: PeriodicJobs | None = None
) -> list[Envelope[Message]]:
    """Fire every timer due at `clock()`; the envelopes of the commands sent."""
    timers, sent = FakeTimers(db, clock), []
    while True:
        firing = await timers.fire_due(clock(), 1000, clock=clock, jobs=jobs or PeriodicJobs())
        sent.extend(firing.envelopes)
        if not firing.marks:
            return sent
