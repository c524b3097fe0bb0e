"""The consumer framework's scenarios on fakes: a test consumer declared in a few lines gets
queues, one effect per message, retries, parking, re-drive and order with no code of its own.

The same scenarios run on the real broker and database in
`tests/integration/test_consumer_framework.py` and `test_consumer_ordered.py`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from domain.errors import DomainError
from events.plan import SubmitPlan
from events.task import TaskRetried
from infra.consumers import Consumer, ConsumerRegistry, Outcome, Runner
from infra.consumers.runner import REDRIVE_HEADER
from infra.consumers.runtime import Settlement
from infra.partitions import PartitionedQueues
from infra.topology import ConsumerQueues
from tests.consumer_support import (
    DEMO_EFFECTS,
    Failures,
    FakeHeldMessages,
    demo_consumer,
    task_retried,
)
from tests.consumer_support import (
    deliver_with_retries as _deliver,
)
from tests.fakes import FakeDatabase, FakeUnitOfWork

if TYPE_CHECKING:
    from events import Envelope
    from infra.db.uow import UnitOfWork


def _runner(consumer: Consumer, db: FakeDatabase) -> Runner:
    return Runner(consumer, lambda: FakeUnitOfWork(db=db), held=FakeHeldMessages(db))


def _effects(db: FakeDatabase) -> list[tuple[uuid.UUID, str]]:
    return [(row["message_id"], row["partition_key"]) for row in db.table(DEMO_EFFECTS)]


def test_queues_and_bindings_are_derived_from_the_declaration() -> None:
    plain, ordered = (
        demo_consumer(Failures()),
        demo_consumer(Failures(), name="demo_o", ordered=True),
    )
    spec = plain.queue_spec()
    assert isinstance(spec, ConsumerQueues)
    assert (spec.queue, spec.parked, spec.bindings) == (
        "hisho.demo",
        "hisho.demo.parked",
        ("task.retried",),
    )
    assert spec.source == "hisho.events"
    assert [spec.retry_queue(d) for d in spec.retry_delays_ms] == ["hisho.demo.retry.200ms"]
    partitioned = ordered.queue_spec()
    assert isinstance(partitioned, PartitionedQueues)
    assert partitioned.queues == ("hisho.demo_o.p0", "hisho.demo_o.p1")
    assert partitioned.next_retry(0) is None  # ordered: no delay queue may reorder a key
    registry = ConsumerRegistry((plain, ordered))
    assert registry.names() == ("demo", "demo_o")
    assert [s.consumer for s in registry.queue_specs()] == ["demo", "demo_o"]
    with pytest.raises(ValueError, match="registered twice"):
        registry.add(plain)


def test_a_declaration_is_checked_when_made() -> None:
    async def handle(envelope: Envelope[Any], uow: UnitOfWork) -> None: ...

    with pytest.raises(ValueError, match="lower snake case"):
        Consumer(name="Demo", handlers={TaskRetried: handle})
    with pytest.raises(ValueError, match="mixes commands and events"):
        Consumer(name="demo", handlers={TaskRetried: handle, SubmitPlan: handle})
    assert Consumer(name="c", handlers={SubmitPlan: handle}).source == "hisho.commands"


def test_a_handler_gets_what_it_asks_for_by_name_or_the_runner_refuses_to_start() -> None:
    async def handle(envelope: Envelope[Any], uow: UnitOfWork, *, mailer: object) -> None: ...

    consumer = Consumer(name="demo", handlers={TaskRetried: handle})
    with pytest.raises(ValueError, match=r"needs \['mailer'\]"):
        Runner(consumer, FakeUnitOfWork)
    assert Runner(consumer, FakeUnitOfWork, deps={"mailer": 1}).injected[TaskRetried] == {
        "mailer": 1
    }


async def test_a_redelivery_changes_nothing() -> None:
    db = FakeDatabase()
    runner = _runner(demo_consumer(Failures()), db)
    event = task_retried(uuid.uuid4(), 1)
    assert await _deliver(runner, event) is Outcome.APPLIED
    assert await _deliver(runner, event) is Outcome.DUPLICATE
    assert _effects(db) == [(event.id, str(event.aggregate_id))]


async def test_a_copy_applied_first_is_found_by_the_commit() -> None:
    db, gate = FakeDatabase(), asyncio.Event()
    runner = _runner(demo_consumer(Failures()), db)
    event = task_retried(uuid.uuid4(), 1)
    claimed = 0
    unit = runner.unit

    def slow_unit() -> UnitOfWork:
        uow = unit()
        original = uow.commit

        async def commit() -> None:
            nonlocal claimed
            claimed += 1
            if claimed == 2:
                gate.set()
            await gate.wait()  # both claimed before either commits
            await original()

        uow.commit = commit  # type: ignore[method-assign]
        return uow

    runner.unit = slow_unit
    outcomes = await asyncio.gather(runner.apply(event), runner.apply(event))
    assert sorted(outcomes) == sorted([Outcome.APPLIED, Outcome.DUPLICATE])
    assert len(_effects(db)) == 1


async def test_a_transient_failure_is_retried_to_one_effect() -> None:
    failures, db = Failures(), FakeDatabase()
    runner = _runner(demo_consumer(failures), db)
    event = task_retried(uuid.uuid4(), 1)
    failures.transient[event.id] = 2
    assert await _deliver(runner, event) is Outcome.APPLIED
    assert failures.calls[event.id] == 3
    assert len(_effects(db)) == 1


async def test_transient_failures_outlasting_the_attempts_go_to_the_delay_queue() -> None:
    failures, db = Failures(), FakeDatabase()
    runner = _runner(demo_consumer(failures), db)
    event = task_retried(uuid.uuid4(), 1)
    failures.transient[event.id] = 5
    settlement = await _deliver(runner, event)
    assert isinstance(settlement, Settlement)
    assert (settlement.action, settlement.routing_key) == ("retry", "demo.200ms")
    assert _effects(db) == []


async def test_poison_is_parked_with_the_reason_later_ones_flow_and_a_redrive_applies_it() -> None:
    failures, db = Failures(), FakeDatabase()
    runner = _runner(demo_consumer(failures), db)
    poison, later = task_retried(uuid.uuid4(), 1), task_retried(uuid.uuid4(), 1)
    failures.poison.add(poison.id)
    settlement = await _deliver(runner, poison)
    assert isinstance(settlement, Settlement)
    assert settlement.action == "park"
    assert settlement.reason == f"unexpected error: ValueError: poison {poison.id}"
    assert failures.calls[poison.id] == 1  # a bug is not retried
    assert await _deliver(runner, later) is Outcome.APPLIED
    failures.poison.clear()  # the bug is fixed; an operator re-drives the parked message
    redrive = {REDRIVE_HEADER: "demo"}
    assert await _deliver(runner, poison, redrive) is Outcome.APPLIED
    assert await _deliver(runner, poison, redrive) is Outcome.DUPLICATE
    assert [message for message, _ in _effects(db)] == [later.id, poison.id]


async def test_a_refusal_is_recorded_with_the_inbox_claim_and_decided_once() -> None:
    db, refused = FakeDatabase(), []

    async def handle(envelope: Envelope[Any], uow: UnitOfWork) -> None:
        uow.rows.add(DEMO_EFFECTS, (envelope.id, "written"))
        raise DomainError("demo-refused", "no")

    async def on_reject(envelope: Envelope[Any], uow: UnitOfWork, error: DomainError) -> None:
        refused.append(envelope.id)
        uow.rows.add(DEMO_EFFECTS, (envelope.id, f"refused: {error}"))

    consumer = Consumer(name="demo", handlers={TaskRetried: handle}, on_reject=on_reject)
    runner = _runner(consumer, db)
    event = task_retried(uuid.uuid4(), 1)
    assert await _deliver(runner, event) is Outcome.REJECTED
    assert await _deliver(runner, event) is Outcome.DUPLICATE
    assert _effects(db) == [(event.id, "refused: demo-refused: no")]  # the handler's row is gone
    assert refused == [event.id]


async def test_ordered_a_parked_message_holds_its_key_a_redrive_releases_the_rest_in_order() -> (
    None
):
    failures, db = Failures(), FakeDatabase()
    runner = _runner(demo_consumer(failures, ordered=True), db)
    task, other = uuid.uuid4(), uuid.uuid4()
    events = [task_retried(task, n) for n in range(1, 6)]
    failures.poison.add(events[1].id)
    outcomes = [await _deliver(runner, event) for event in events]
    assert outcomes[0] is Outcome.APPLIED
    assert isinstance(outcomes[1], Settlement)
    assert outcomes[1].action == "park"
    assert outcomes[2:] == [Outcome.HELD] * 3
    assert await _deliver(runner, task_retried(other, 1)) is Outcome.APPLIED  # other keys flow
    assert [key for _, key in _effects(db)] == [str(task), str(other)]
    failures.poison.clear()
    assert await _deliver(runner, events[1], {REDRIVE_HEADER: "demo"}) is Outcome.APPLIED
    applied = [message for message, key in _effects(db) if key == str(task)]
    assert applied == [event.id for event in events]  # 1, then 2..5 in order
    assert await runner.held.head("demo", str(task)) is None if runner.held else False


async def test_ordered_a_released_message_that_fails_is_parked_and_holds_the_rest() -> None:
    failures, db = Failures(), FakeDatabase()
    runner = _runner(demo_consumer(failures, ordered=True), db)
    task = uuid.uuid4()
    events = [task_retried(task, n) for n in range(1, 5)]
    failures.poison.update({events[0].id, events[2].id})
    for event in events:
        await _deliver(runner, event)
    failures.poison.discard(events[0].id)
    assert await _deliver(runner, events[0], {REDRIVE_HEADER: "demo"}) is Outcome.APPLIED
    assert [message for message, _ in _effects(db)] == [events[0].id, events[1].id]
    assert runner.held is not None
    head = await runner.held.head("demo", str(task))
    assert head is not None
    assert (head.message_id, head.parked) == (events[2].id, True)
    assert head.reason.startswith("unexpected error: ValueError: poison")


async def test_ordered_a_release_cut_short_goes_on_at_start() -> None:
    failures, db = Failures(), FakeDatabase()
    runner = _runner(demo_consumer(failures, ordered=True), db)
    task = uuid.uuid4()
    events = [task_retried(task, n) for n in range(1, 4)]
    failures.poison.add(events[0].id)
    for event in events:
        await _deliver(runner, event)
    failures.poison.clear()
    await runner.apply(events[0], key=str(task))  # applied, then the process died: no release
    await runner.release_stuck()  # the next start
    assert [message for message, _ in _effects(db)] == [event.id for event in events]


async def test_ordered_a_redelivered_blocker_applied_without_a_redrive_releases_the_rest() -> None:
    failures, db = Failures(), FakeDatabase()
    runner = _runner(demo_consumer(failures, ordered=True), db)
    task = uuid.uuid4()
    events = [task_retried(task, n) for n in range(1, 4)]
    failures.poison.add(events[0].id)
    for event in events:  # 1 parked (its parking recorded, say, but not acknowledged), 2-3 held
        await _deliver(runner, event)
    failures.poison.clear()
    assert await _deliver(runner, events[0], redelivered=True) is Outcome.APPLIED
    assert [message for message, _ in _effects(db)] == [event.id for event in events]
