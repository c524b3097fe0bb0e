"""The scheduler on a real PostgreSQL (a private database): exactly once, atomically, in a race.

The scheduler's clock is a fake one set past the timers' due times, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from events import Actor
from events.plan import ExpirePlan
from infra.db.engine import create_engine
from infra.db.outbox import envelope_from_row
from infra.db.pg_uow import PgUnitOfWork
from infra.db.uow import AlreadyAppliedError
from infra.message_context import MessageContext
from infra.scheduler.metrics import SchedulerMetrics
from infra.scheduler.periodic import PeriodicJob, PeriodicJobs
from infra.scheduler.timers import cancel, schedule
from infra.settings import Settings, load_settings
from producers.scheduler.loop import Scheduler
from producers.scheduler.store import TimerStore
from tests.fakes import FakeClock
from tests.relay_harness import private_database

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncEngine

DUE = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def private(settings: Settings) -> AsyncIterator[Settings]:
    async with private_database(settings) as private:
        yield private


@pytest.fixture
async def db(private: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(private.database_dsn)
    await connection.execute("TRUNCATE timers, timer_cancellations, outbox, inbox")
    yield connection
    await connection.close()


@pytest.fixture
async def private_engine(private: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(private)
    yield engine
    await engine.dispose()


def _context() -> MessageContext:
    return MessageContext(
        correlation_id=uuid.uuid4(), causation_id=uuid.uuid4(), actor=Actor.system("approval")
    )


async def _schedule(engine: AsyncEngine, *timers: tuple[str, datetime, str]) -> MessageContext:
    context = _context()
    uow = PgUnitOfWork(engine, context=context)
    async with uow:
        for key, due, group in timers:
            command = ExpirePlan(plan_id=uuid.uuid4())
            schedule(uow, key=key, due=due, command=command, group=group)
        await uow.commit()
    return context


def _scheduler(private: Settings, clock: FakeClock, *, batch: int = 1000) -> Scheduler:
    settings = load_settings(database_url=private.database_dsn, scheduler_batch_size=batch)
    return Scheduler(settings, clock=clock, metrics=SchedulerMetrics())


async def test_a_due_timer_writes_one_outbox_row_in_the_transaction_that_marks_it_fired(
    private: Settings, db: asyncpg.Connection, private_engine: AsyncEngine
) -> None:
    context = await _schedule(private_engine, ("deadline", DUE, "approval:p"))
    clock = FakeClock(DUE - timedelta(seconds=1))
    scheduler, store = _scheduler(private, clock), TimerStore(db)
    assert await scheduler.tick(store) == 0
    clock.advance(timedelta(seconds=1, milliseconds=250))
    assert await scheduler.tick(store) == 1
    assert await scheduler.tick(store) == 0
    rows = await db.fetch(
        "SELECT o.*, o.xmin::text AS tx, t.xmin::text AS timer_tx, t.fired_at AS timer_fired"
        " FROM outbox o JOIN timers t ON t.command_id = o.id"
    )
    assert len(rows) == 1
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1
    [row] = rows
    assert row["tx"] == row["timer_tx"]  # one transaction wrote both
    assert row["timer_fired"] == clock()
    assert (row["type"], row["exchange"], row["kind"]) == (
        "ExpirePlan",
        "hisho.commands",
        "command",
    )
    assert row["correlation_id"] == context.correlation_id
    assert row["causation_id"] == context.causation_id
    assert envelope_from_row(row).actor == Actor.system("scheduler")
    assert scheduler.metrics.lag.total == pytest.approx(0.25)


async def test_two_schedulers_at_once_fire_each_timer_once(
    private: Settings, db: asyncpg.Connection, private_engine: AsyncEngine
) -> None:
    count = 3000
    await _schedule(
        private_engine,
        *((f"race:{n}", DUE + timedelta(microseconds=n), "race") for n in range(count)),
    )
    clock = FakeClock(DUE + timedelta(seconds=1))
    connections = [await asyncpg.connect(private.database_dsn) for _ in range(2)]
    schedulers = [_scheduler(private, clock, batch=100) for _ in range(2)]

    async def drain(scheduler: Scheduler, store: TimerStore) -> None:
        while await scheduler.tick(store):
            await asyncio.sleep(0)

    try:
        await asyncio.gather(
            *(drain(s, TimerStore(c)) for s, c in zip(schedulers, connections, strict=True))
        )
    finally:
        for connection in connections:
            await connection.close()
    assert all(s.metrics.fired > 0 for s in schedulers), [s.metrics.fired for s in schedulers]
    assert sum(s.metrics.fired for s in schedulers) == count
    per_plan = await db.fetch(
        "SELECT data->>'plan_id' AS plan, count(*) AS n FROM outbox GROUP BY 1 HAVING count(*) > 1"
    )
    assert per_plan == []
    assert await db.fetchval("SELECT count(*) FROM outbox") == count
    assert await db.fetchval("SELECT count(*) FROM timers WHERE fired_at IS NULL") == 0
    unmatched = "SELECT count(*) FROM timers t LEFT JOIN outbox o ON o.id = t.command_id"
    assert await db.fetchval(unmatched + " WHERE o.id IS NULL") == 0


async def test_a_cancellation_commits_with_the_rest_of_its_unit_or_not_at_all(
    private: Settings, db: asyncpg.Connection, private_engine: AsyncEngine
) -> None:
    await _schedule(
        private_engine, ("a:deadline", DUE, "approval:a"), ("b:deadline", DUE, "approval:b")
    )
    decision = uuid.uuid4()
    for group in ("approval:a", "approval:b"):
        uow = PgUnitOfWork(private_engine, context=_context())
        async with uow:
            await uow.inbox.claim("approval", decision)  # the second unit: a duplicate
            await uow.outbox.add_command(ExpirePlan(plan_id=uuid.uuid4()), context=_context())
            cancel(uow, group=group)
            if group == "approval:a":
                await uow.commit()
            else:
                with pytest.raises(AlreadyAppliedError):
                    await uow.commit()
    assert await db.fetchval("SELECT count(*) FROM outbox") == 1  # the first unit's command
    groups = await db.fetch("SELECT timer_group FROM timer_cancellations")
    assert [g["timer_group"] for g in groups] == ["approval:a"]
    clock = FakeClock(DUE + timedelta(seconds=1))
    scheduler = _scheduler(private, clock)
    assert await scheduler.tick(TimerStore(db)) == 2
    assert (scheduler.metrics.fired, scheduler.metrics.cancelled) == (1, 1)
    state = await db.fetch("SELECT key, fired_at, cancelled_at FROM timers ORDER BY key")
    assert [(r["key"], r["fired_at"] is None, r["cancelled_at"] is None) for r in state] == [
        ("a:deadline", True, False),
        ("b:deadline", False, True),
    ]


async def test_a_fired_key_scheduled_again_stays_fired_and_a_cancelled_one_revives(
    private: Settings, db: asyncpg.Connection, private_engine: AsyncEngine
) -> None:
    await _schedule(private_engine, ("once", DUE, "g1"), ("again", DUE, "g2"))
    uow = PgUnitOfWork(private_engine, context=_context())
    async with uow:
        cancel(uow, group="g2")
        await uow.commit()
    scheduler, store = _scheduler(private, FakeClock(DUE + timedelta(seconds=1))), TimerStore(db)
    assert await scheduler.tick(store) == 2  # "once" fired, "again" found cancelled
    await _schedule(private_engine, ("once", DUE, "g1"), ("again", DUE, "g2"))  # e.g. a redelivery
    assert await scheduler.tick(store) == 1  # only "again": scheduled after its cancellation
    assert scheduler.metrics.fired == 2
    assert await db.fetchval("SELECT count(*) FROM outbox") == 2


async def test_periodic_jobs_are_armed_once_and_each_occurrence_fires_once(
    private: Settings, db: asyncpg.Connection
) -> None:
    jobs = PeriodicJobs(
        [PeriodicJob("check", "*/5 * * * *", lambda _: ExpirePlan(plan_id=uuid.uuid4()))]
    )
    clock = FakeClock(datetime(2026, 5, 1, 12, 1, tzinfo=UTC))
    settings = load_settings(database_url=private.database_dsn)
    store = TimerStore(db)
    first = Scheduler(settings, clock=clock, jobs=jobs, metrics=SchedulerMetrics())
    assert await first.arm_periodic(store) == 1
    again = Scheduler(settings, clock=clock, jobs=jobs, metrics=SchedulerMetrics())
    assert await again.arm_periodic(store) == 0
    for _ in range(3):
        clock.advance(timedelta(minutes=5))
        assert await first.tick(store) == 1
        assert await again.arm_periodic(store) == 0
    due = await db.fetch("SELECT due_at FROM timers WHERE fired_at IS NOT NULL ORDER BY due_at")
    assert [r["due_at"].minute for r in due] == [5, 10, 15]
    assert await db.fetchval("SELECT count(*) FROM outbox") == 3


async def test_cancellations_that_cancel_nothing_pending_are_pruned(
    private: Settings, db: asyncpg.Connection, private_engine: AsyncEngine
) -> None:
    await _schedule(private_engine, ("done", DUE, "a"), ("waiting", DUE + timedelta(days=1), "b"))
    for group in ("a", "b"):
        uow = PgUnitOfWork(private_engine, context=_context())
        async with uow:
            cancel(uow, group=group)
            await uow.commit()
    clock = FakeClock(DUE + timedelta(seconds=1))
    scheduler, store = _scheduler(private, clock), TimerStore(db)
    assert await scheduler.tick(store) == 1  # "done" found cancelled
    assert await store.prune_cancellations(datetime.now(UTC) - timedelta(minutes=5)) == 0
    assert await store.prune_cancellations(datetime.now(UTC) + timedelta(seconds=1)) == 1
    left = await db.fetch("SELECT timer_group FROM timer_cancellations")
    assert [row["timer_group"] for row in left] == ["b"]
    clock.advance(timedelta(days=1))
    assert await scheduler.tick(store) == 1
    assert (scheduler.metrics.fired, scheduler.metrics.cancelled) == (0, 2)
