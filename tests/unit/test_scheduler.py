"""The scheduler's firing and periodic jobs with fakes and a fake clock (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from events import Actor
from events.plan import ExpirePlan
from infra.db.timer_tables import TIMERS
from infra.message_context import MessageContext
from infra.scheduler.metrics import SchedulerMetrics
from infra.scheduler.periodic import PeriodicJob, PeriodicJobs
from infra.scheduler.timers import cancel, schedule
from infra.settings import SettingsError, load_settings
from producers.scheduler.loop import Scheduler
from tests.fakes import FakeClock, FakeDatabase, FakeUnitOfWork
from tests.scheduler_fakes import FakeTimers, fire_timers

START = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)


class World:
    """A fake database, a fake clock, and a scheduler over them."""

    def __init__(self, *, batch: int = 1000, jobs: PeriodicJobs | None = None) -> None:
        self.clock = FakeClock(START)
        self.db = FakeDatabase()
        self.timers = FakeTimers(self.db, self.clock)
        self.metrics = SchedulerMetrics()
        self.jobs = jobs or PeriodicJobs()
        self.scheduler = self.new_scheduler(batch)

    def new_scheduler(self, batch: int = 1000) -> Scheduler:
        settings = load_settings(scheduler_batch_size=batch)
        return Scheduler(settings, clock=self.clock, jobs=self.jobs, metrics=self.metrics)

    async def schedule(self, key: str, after: timedelta, group: str = "g") -> MessageContext:
        context = MessageContext(
            correlation_id=uuid4(), causation_id=uuid4(), actor=Actor.system("approval")
        )
        uow = FakeUnitOfWork(db=self.db, clock=self.clock, context=context)
        async with uow:
            command = ExpirePlan(plan_id=uuid4())
            schedule(uow, key=key, due=self.clock() + after, command=command, group=group)
            await uow.commit()
        return context

    async def cancel(self, group: str) -> None:
        context = MessageContext.start(Actor.system("approval"))
        uow = FakeUnitOfWork(db=self.db, clock=self.clock, context=context)
        async with uow:
            cancel(uow, group=group)
            await uow.commit()

    async def tick(self) -> int:
        return await self.scheduler.tick(self.timers)

    def timer(self, key: str) -> dict[str, object]:
        return next(t for t in self.db.table(TIMERS) if t["key"] == key)


async def test_a_due_timer_fires_once_with_the_scheduling_units_context() -> None:
    world = World()
    context = await world.schedule("deadline", timedelta(minutes=5))
    assert await world.tick() == 0
    world.clock.advance(timedelta(minutes=5))
    assert await world.tick() == 1
    [sent] = world.db.envelopes
    assert sent.type == "ExpirePlan"
    assert sent.actor == Actor.system("scheduler")
    assert (sent.correlation_id, sent.causation_id) == (
        context.correlation_id,
        context.causation_id,
    )
    assert world.timer("deadline")["fired_at"] == world.clock()
    assert world.timer("deadline")["command_id"] == sent.id
    world.clock.advance(timedelta(hours=1))
    assert await world.tick() == 0
    assert len(world.db.envelopes) == 1


async def test_a_cancelled_timer_never_fires_and_is_marked_cancelled() -> None:
    world = World()
    await world.schedule("deadline", timedelta(minutes=5), group="approval:p")
    await world.schedule("reminder", timedelta(minutes=2), group="approval:p")
    await world.schedule("other", timedelta(minutes=5), group="approval:q")
    await world.cancel("approval:p")
    world.clock.advance(timedelta(minutes=10))
    assert await world.tick() == 3
    assert [e.type for e in world.db.envelopes] == ["ExpirePlan"]
    assert world.timer("deadline")["cancelled_at"] == world.clock()
    assert world.timer("deadline")["fired_at"] is None
    assert (world.metrics.fired, world.metrics.cancelled) == (1, 2)
    assert await world.tick() == 0  # cancelled timers leave the pending set


async def test_scheduling_a_key_again_moves_its_due_time() -> None:
    world = World()
    await world.schedule("k", timedelta(minutes=1))
    await world.schedule("k", timedelta(minutes=10))
    world.clock.advance(timedelta(minutes=5))
    assert await world.tick() == 0
    world.clock.advance(timedelta(minutes=5))
    assert await world.tick() == 1


async def test_a_full_batch_leaves_the_rest_for_the_next_transaction_in_due_order() -> None:
    world = World(batch=2)
    for n in range(5):
        await world.schedule(f"k{n}", timedelta(seconds=5 - n))
    world.clock.advance(timedelta(seconds=10))
    assert [await world.tick() for _ in range(4)] == [2, 2, 1, 0]
    assert world.metrics.batches == 3
    fired = sorted(world.db.table(TIMERS), key=lambda t: str(t["command_id"]))
    assert all(t["fired_at"] is not None for t in fired)


async def test_the_lag_from_due_to_fired_is_recorded() -> None:
    world = World()
    await world.schedule("k", timedelta(seconds=1))
    world.clock.advance(timedelta(seconds=3))
    await world.tick()
    assert world.metrics.lag.count == 1
    assert world.metrics.lag.total == pytest.approx(2.0)
    assert dict(world.metrics.lag.buckets())[2.5] == 1
    assert dict(world.metrics.lag.buckets())[1.0] == 0


async def test_a_timer_whose_command_cannot_be_read_is_marked_and_blocks_nothing() -> None:
    world = World()
    await world.schedule("broken", timedelta(seconds=1))
    await world.schedule("fine", timedelta(seconds=2))
    world.timer("broken")["type"] = "NoSuchCommand"
    world.clock.advance(timedelta(seconds=5))
    assert await world.tick() == 2
    assert len(world.db.envelopes) == 1
    assert "NoSuchCommand" in str(world.timer("broken")["problem"])
    assert world.metrics.failed == 1


def test_a_cron_expression_gives_the_next_occurrence_strictly_after_a_moment() -> None:
    job = PeriodicJob("digest", "0 9 * * 1-5", lambda _: ExpirePlan(plan_id=uuid4()))
    friday_nine = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)
    assert job.next_after(friday_nine) == datetime(2026, 3, 30, 9, 0, tzinfo=UTC)
    assert job.next_after(friday_nine - timedelta(seconds=1)) == friday_nine


def test_a_cron_occurrence_keeps_local_time_across_daylight_saving() -> None:
    job = PeriodicJob("digest", "0 9 * * *", lambda _: ExpirePlan(plan_id=uuid4()), "Europe/Berlin")
    before = job.next_after(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))  # 28th, CET: 08:00 UTC
    after = job.next_after(before)  # CEST from 29 March: 07:00 UTC
    assert (before.hour, after.hour) == (8, 7)
    assert after - before == timedelta(hours=23)


def test_bad_periodic_jobs_are_refused() -> None:
    with pytest.raises(ValueError, match="cron"):
        PeriodicJob("digest", "61 * * * *", lambda _: ExpirePlan(plan_id=uuid4()))
    with pytest.raises(ValueError, match="name"):
        PeriodicJob("a:b", "* * * * *", lambda _: ExpirePlan(plan_id=uuid4()))
    job = PeriodicJob("digest", "* * * * *", lambda _: ExpirePlan(plan_id=uuid4()))
    with pytest.raises(ValueError, match="two"):
        PeriodicJobs([job, job])


def _hourly() -> PeriodicJobs:
    return PeriodicJobs([PeriodicJob("hourly", "0 * * * *", lambda _: ExpirePlan(plan_id=uuid4()))])


async def test_each_occurrence_of_a_periodic_job_fires_once_across_restarts() -> None:
    world = World(jobs=_hourly())
    assert await world.scheduler.arm_periodic(world.timers) == 1
    assert await world.new_scheduler().arm_periodic(world.timers) == 0  # a restart: armed
    for _ in range(3):
        world.clock.advance(timedelta(hours=1))
        assert await world.tick() == 1
        assert await world.new_scheduler().arm_periodic(world.timers) == 0
        assert await world.tick() == 0
    assert len(world.db.envelopes) == 3
    keys = [t["key"] for t in world.db.table(TIMERS) if t["fired_at"] is not None]
    assert keys == [f"periodic:hourly:2026-03-27T{h}:00:00+00:00" for h in (10, 11, 12)]


async def test_occurrences_missed_while_no_scheduler_ran_fire_once() -> None:
    world = World(jobs=_hourly())
    await world.scheduler.arm_periodic(world.timers)
    world.clock.advance(timedelta(hours=5, minutes=30))  # five occurrences passed unserved
    sent = await fire_timers(world.db, world.clock, jobs=world.jobs)
    assert len(sent) == 1
    [pending] = world.timers.pending()
    assert pending["due_at"] == datetime(2026, 3, 27, 15, 0, tzinfo=UTC)


async def test_the_scheduler_sleeps_until_the_next_due_timer_at_most_the_poll_interval() -> None:
    world = World()
    interval = world.scheduler._settings.scheduler_poll_interval
    assert await world.scheduler._sleep_for(world.timers) == interval
    await world.schedule("soon", timedelta(seconds=interval / 4))
    assert await world.scheduler._sleep_for(world.timers) == pytest.approx(interval / 4)


@pytest.mark.parametrize(
    ("name", "value"),
    [("scheduler_batch_size", 0), ("scheduler_poll_interval", 0), ("scheduler_standbys", 9)],
)
def test_scheduler_settings_out_of_range_are_refused_naming_the_variable(
    name: str, value: int
) -> None:
    with pytest.raises(SettingsError, match=f"HISHO_{name.upper()}"):
        load_settings(**{name: value})


async def test_cancellations_are_pruned_once_they_can_cancel_nothing_pending() -> None:
    world = World()
    await world.schedule("done", timedelta(minutes=1), group="a")
    await world.schedule("waiting", timedelta(days=1), group="b")
    await world.cancel("a")
    await world.cancel("b")
    world.clock.advance(timedelta(minutes=2))
    assert await world.tick() == 1  # "done" found cancelled: group a has nothing pending
    assert await world.scheduler.prune(world.timers) == 0  # both younger than the margin
    world.clock.advance(timedelta(hours=1))
    assert await world.scheduler.prune(world.timers) == 1  # a's; b's still cancels "waiting"
    world.clock.advance(timedelta(days=1))
    assert await world.tick() == 1
    assert world.timer("waiting")["cancelled_at"] == world.clock()
    assert world.db.envelopes == []
