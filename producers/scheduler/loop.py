"""The scheduler: fires due timers through the outbox, exactly once; one leader, hot standbys.

Exactly once, and why it holds
------------------------------
A timer's command is written to the outbox by the transaction that marks the timer fired
(`producers.scheduler.store.TimerStore.fire_due`): both or neither. The transaction locks the
timers it fires (`FOR UPDATE SKIP LOCKED`) and reads only pending ones, so no two
transactions fire the same timer, even with two schedulers at once. A fired key is never
armed again (the `timers` conflict rule). The relay then publishes the command like any
outbox row (at least once on the wire; consumers' inboxes make it once in effect).

One leader
----------
Only the process holding the advisory lock `SCHEDULER_LOCK_KEY` fires (`infra.leadership`);
the others wait in `pg_advisory_lock` as hot standbys and take over the moment the leader's
session ends (even after SIGKILL). Firing runs on the lock's own connection: a leader that
lost its connection lost its lock and can no longer fire. Any failure ends the term; the
next one starts after a tenacity backoff.

Timing: while a full batch keeps coming the leader fires again at once; otherwise it sleeps
until the earliest pending timer is due, at most `scheduler_poll_interval` (a timer
scheduled meanwhile is found within that interval). Lags (due → fired) go to the log and to
`SchedulerMetrics`. The clock is injected (`App.clock`).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from infra.leadership import acquire_leadership, serve_terms, wait_or_stop
from infra.readiness import notify_ready
from infra.scheduler.metrics import METRICS, SchedulerMetrics
from infra.scheduler.periodic import PeriodicJobs
from producers.scheduler.store import TimerStore

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from infra.app import App
    from infra.clock import Clock
    from infra.scheduler.firing import Firing
    from infra.settings import Settings

log = structlog.get_logger("hisho.scheduler")

# Arbitrary but fixed: "hishoSCH". Advisory locks are per database.
SCHEDULER_LOCK_KEY = 0x686973686F534348
APPLICATION_PREFIX = "hisho-scheduler"
LOG_EVERY = 1.0  # seconds: firing is logged as one summary line per interval, at most
# Cancellations that cancel no pending timer are deleted every PRUNE_EVERY seconds, once
# older than PRUNE_MARGIN: a unit that read the clock before a cancellation may still be
# committing a timer it cancels.
PRUNE_EVERY = 3600.0
PRUNE_MARGIN = timedelta(minutes=5)
MIN_WAIT = 0.001  # seconds: a due timer another transaction holds is looked at again soon


def application_name() -> str:
    """What the scheduler's lock connection shows in `pg_stat_activity` (with its pid)."""
    return f"{APPLICATION_PREFIX}:{os.getpid()}"


@dataclass
class _Window:
    """What was fired since the last `scheduler.fired` log line."""

    since: float = field(default_factory=time.monotonic)
    batches: int = 0
    fired: int = 0
    cancelled: int = 0
    failed: int = 0
    lag_max: float = 0.0

    def add(self, firing: Firing) -> None:
        self.batches += 1
        self.fired += len(firing.envelopes)
        self.cancelled += firing.cancelled
        self.failed += firing.failed
        self.lag_max = max(self.lag_max, *firing.lags, 0.0)

    def fields(self) -> dict[str, float | int]:
        return {
            "batches": self.batches,
            "fired": self.fired,
            "cancelled": self.cancelled,
            "failed": self.failed,
            "lag_max_seconds": round(self.lag_max, 6),
        }


class Timers(Protocol):
    """Where the timers are (`TimerStore` on PostgreSQL; the unit tests' fake)."""

    async def fire_due(
        self, now: datetime, limit: int, *, clock: Clock, jobs: PeriodicJobs
    ) -> Firing:
        """Fire up to `limit` timers due at `now`, in one transaction; what it wrote."""
        ...

    async def add_timers(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write `timers` rows (a fired key stays as it is)."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest pending timer is due, if any."""
        ...

    async def armed(self, groups: Sequence[str]) -> set[str]:
        """Which of `groups` have a pending timer."""
        ...

    async def prune_cancellations(self, before: datetime) -> int:
        """Delete cancellations older than `before` that cancel no pending timer; how many."""
        ...


class Scheduler:
    """Fires due timers while `stop` is unset, as leader or standby."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        jobs: PeriodicJobs | None = None,
        metrics: SchedulerMetrics = METRICS,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._jobs = jobs or PeriodicJobs()
        self.metrics = metrics
        self._stop = asyncio.Event()
        self._window = _Window()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve terms until `stop` is set; any failure ends a term and starts the next one."""
        self._stop = stop
        await serve_terms(self._term, stop, name="scheduler")

    async def _term(self) -> None:
        """Wait for the lock (hot standby), then lead until stopped."""
        if self._stop.is_set():
            return
        log.info("scheduler.standby")
        notify_ready("scheduler")  # serving: as a hot standby now, as the leader soon
        connection = await acquire_leadership(
            self._settings.database_dsn,
            self._stop,
            key=SCHEDULER_LOCK_KEY,
            application=application_name(),
        )
        if connection is None:
            return
        try:
            await self.lead(TimerStore(connection))
        finally:
            connection.terminate()  # releases the lock at once
            log.info("scheduler.term_ended")

    async def lead(self, store: Timers) -> None:
        """Arm the periodic jobs, then fire due timers until stopped."""
        armed = await self.arm_periodic(store)
        log.info("scheduler.leader", periodic_jobs=len(self._jobs), armed=armed)
        pruned_at = -PRUNE_EVERY
        while not self._stop.is_set():
            if time.monotonic() - pruned_at >= PRUNE_EVERY:
                await self.prune(store)
                pruned_at = time.monotonic()
            if await self.tick(store) >= self._settings.scheduler_batch_size:
                continue  # a full batch: more may be due
            self._log_window()  # the tail of a burst
            await wait_or_stop(self._stop, await self._sleep_for(store))

    async def arm_periodic(self, store: Timers) -> int:
        """Schedule the next occurrence of every job that has no pending timer; how many."""
        groups = {job.group: job for job in self._jobs.values()}
        missing = set(groups) - await store.armed(sorted(groups))
        now = self._clock()
        rows = [groups[group].timer(groups[group].next_after(now)) for group in sorted(missing)]
        await store.add_timers(rows)
        return len(rows)

    async def prune(self, store: Timers) -> int:
        """Forget the cancellations that can no longer cancel anything; how many."""
        pruned = await store.prune_cancellations(self._clock() - PRUNE_MARGIN)
        if pruned:
            log.info("scheduler.cancellations_pruned", pruned=pruned)
        return pruned

    async def tick(self, store: Timers) -> int:
        """Fire one batch of timers due now; how many timers it handled."""
        now = self._clock()
        firing = await store.fire_due(
            now, self._settings.scheduler_batch_size, clock=self._clock, jobs=self._jobs
        )
        if firing.marks:
            self._record(firing)
        return len(firing.marks)

    def _record(self, firing: Firing) -> None:
        metrics = self.metrics
        metrics.batches += 1
        metrics.fired += len(firing.envelopes)
        metrics.cancelled += firing.cancelled
        metrics.failed += firing.failed
        for lag in firing.lags:
            metrics.lag.observe(lag)
        for mark in firing.marks:
            if mark.problem is not None:
                log.error("scheduler.timer_failed", key=mark.key, problem=mark.problem)
        self._window.add(firing)
        self._log_window()

    def _log_window(self) -> None:
        """Log what was fired since the last line, if anything, at most once per LOG_EVERY."""
        if self._window.batches and time.monotonic() - self._window.since >= LOG_EVERY:
            log.info("scheduler.fired", **self._window.fields())
            self._window = _Window()

    async def _sleep_for(self, store: Timers) -> float:
        interval = self._settings.scheduler_poll_interval
        due = await store.next_due()
        if due is None:
            return interval
        return min(interval, max(MIN_WAIT, (due - self._clock()).total_seconds()))


async def run(app: App, stop: asyncio.Event, *, jobs: PeriodicJobs | None = None) -> None:
    """Run the scheduler on the process's settings and clock (leader or hot standby)."""
    await Scheduler(app.settings, clock=app.clock, jobs=jobs).run(stop)
