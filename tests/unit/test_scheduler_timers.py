"""The timer API (`infra.scheduler.timers`) on the fake unit of work and a fake clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import cast
from uuid import uuid4

import pytest

from events import Actor, Command
from events.plan import ExpirePlan, PlanExpired
from infra.db.timer_tables import TIMER_CANCELLATIONS, TIMERS
from infra.message_context import MessageContext
from infra.scheduler.timers import (
    SCHEDULER_ACTOR,
    cancel,
    command_of,
    fired_context,
    is_cancelled,
    schedule,
)
from tests.fakes import FakeClock, FakeDatabase, FakeUnitOfWork

DUE = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)


def _context() -> MessageContext:
    return MessageContext(
        correlation_id=uuid4(),
        causation_id=uuid4(),
        actor=Actor.system("approval"),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )


def _unit(db: FakeDatabase, clock: FakeClock) -> FakeUnitOfWork:
    return FakeUnitOfWork(db=db, clock=clock, context=_context())


async def _schedule(
    db: FakeDatabase, clock: FakeClock, key: str, due: datetime, group: str
) -> None:
    uow = _unit(db, clock)
    async with uow:
        schedule(uow, key=key, due=due, command=ExpirePlan(plan_id=uuid4()), group=group)
        await uow.commit()


async def _cancel(db: FakeDatabase, clock: FakeClock, group: str) -> None:
    uow = _unit(db, clock)
    async with uow:
        cancel(uow, group=group)
        await uow.commit()


def _live(db: FakeDatabase) -> list[str]:
    cancellations = db.table(TIMER_CANCELLATIONS)
    return [t["key"] for t in db.table(TIMERS) if not is_cancelled(t, cancellations)]


async def test_a_timer_is_written_with_the_unit_and_keeps_its_causal_context() -> None:
    db, clock = FakeDatabase(), FakeClock()
    uow = _unit(db, clock)
    plan_id = uuid4()
    async with uow:
        schedule(uow, key="deadline", due=DUE, command=ExpirePlan(plan_id=plan_id), group="g")
        assert db.table(TIMERS) == []  # nothing before the commit
        await uow.commit()
    [timer] = db.table(TIMERS)
    assert (timer["key"], timer["timer_group"], timer["due_at"]) == ("deadline", "g", DUE)
    assert command_of(timer) == ExpirePlan(plan_id=plan_id)
    assert timer["fired_at"] is None
    assert timer["scheduled_at"] == clock()
    context = fired_context(timer)
    assert uow.context is not None
    assert context.actor == SCHEDULER_ACTOR == Actor.system("scheduler")
    assert context.correlation_id == uow.context.correlation_id
    assert context.causation_id == uow.context.causation_id
    assert context.traceparent == uow.context.traceparent


async def test_a_unit_left_without_commit_schedules_nothing() -> None:
    db = FakeDatabase()
    uow = _unit(db, FakeClock())
    async with uow:
        schedule(uow, key="k", due=DUE, command=ExpirePlan(plan_id=uuid4()), group="g")
    assert db.table(TIMERS) == []


async def test_scheduling_a_key_again_replaces_the_unfired_timer() -> None:
    db, clock = FakeDatabase(), FakeClock()
    await _schedule(db, clock, "k", DUE, "g")
    later = DUE + timedelta(hours=1)
    clock.advance(timedelta(seconds=1))
    await _schedule(db, clock, "k", later, "g")
    [timer] = db.table(TIMERS)
    assert timer["due_at"] == later
    assert timer["scheduled_at"] == clock()


async def test_a_fired_timer_is_never_armed_again() -> None:
    db, clock = FakeDatabase(), FakeClock()
    await _schedule(db, clock, "k", DUE, "g")
    db.table(TIMERS)[0]["fired_at"] = clock()  # what the scheduler's firing does
    await _schedule(db, clock, "k", DUE + timedelta(days=1), "g")
    [timer] = db.table(TIMERS)
    assert timer["due_at"] == DUE


async def test_cancel_cancels_the_groups_earlier_timers_only() -> None:
    db, clock = FakeDatabase(), FakeClock()
    await _schedule(db, clock, "a1", DUE, "approval:a")
    await _schedule(db, clock, "a2", DUE, "approval:a")
    await _schedule(db, clock, "b1", DUE, "approval:b")
    await _cancel(db, clock, "approval:a")  # the same instant (a frozen clock): another unit
    assert _live(db) == ["b1"]
    clock.advance(timedelta(seconds=1))
    await _schedule(db, clock, "a3", DUE, "approval:a")  # after the cancellation: live
    await _schedule(db, clock, "a1", DUE, "approval:a")  # scheduled again: live again
    assert sorted(_live(db)) == ["a1", "a3", "b1"]


async def test_a_unit_may_cancel_a_group_and_arm_it_anew() -> None:
    db, clock = FakeDatabase(), FakeClock()
    await _schedule(db, clock, "old", DUE, "task:1")
    uow = _unit(db, clock)
    async with uow:
        cancel(uow, group="task:1")
        schedule(uow, key="new", due=DUE, command=ExpirePlan(plan_id=uuid4()), group="task:1")
        await uow.commit()
    assert _live(db) == ["new"]


async def test_cancellation_is_atomic_with_the_unit() -> None:
    db, clock = FakeDatabase(), FakeClock()
    await _schedule(db, clock, "k", DUE, "g")
    uow = _unit(db, clock)
    async with uow:
        cancel(uow, group="g")
        await uow.rollback()
    assert _live(db) == ["k"]


async def test_timers_carry_commands_only_with_aware_times_and_a_context() -> None:
    uow = _unit(FakeDatabase(), FakeClock())
    async with uow:
        event = cast("Command", PlanExpired.model_construct(plan_id=uuid4()))  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="commands only"):
            schedule(uow, key="k", due=DUE, command=event, group="g")
        with pytest.raises(ValueError, match="timezone-aware"):
            schedule(
                uow,
                key="k",
                due=DUE.replace(tzinfo=None),
                command=ExpirePlan(plan_id=uuid4()),
                group="g",
            )
    bare = FakeUnitOfWork()
    async with bare:
        with pytest.raises(RuntimeError, match="context"):
            cancel(bare, group="g")


def test_a_timer_row_read_as_json_text_gives_its_command() -> None:
    plan_id = uuid4()
    row = {
        "key": "k",
        "type": "ExpirePlan",
        "version": 1,
        "data": json.dumps({"plan_id": str(plan_id)}),
    }
    assert command_of(row) == ExpirePlan(plan_id=plan_id)
