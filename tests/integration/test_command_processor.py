"""The command processor on real RabbitMQ and PostgreSQL: the shared scenarios, acks, parking,
holds and re-drive, and competing processors on one aggregate deciding in order.

Each test runs its own in-process processor (the framework's router, runner and unit of
work). Anything it binds is private to the test (exclusive queues); hisho's own queues are
only consumed.
"""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, text

from consumers.command_processor import CONSUMER
from events import Actor, catalog
from events.catalog import partition_key
from events.plan import ApprovePlan, DraftPlan, HumanStep, SubmitPlan
from events.project import ApprovalPolicy, CreateProject
from infra.consumers.redrive import redrive
from infra.consumers.runtime import (
    ORIGINAL_ROUTING_KEY_HEADER,
    PARKED_CONSUMER_HEADER,
    PARKED_ERROR_HEADER,
    PARKED_REASON_HEADER,
    RETRIES_HEADER,
)
from infra.db.command_status import CommandState
from infra.db.engine import create_engine
from infra.db.inbox import PgInbox
from infra.db.state_tables import aggregate_state
from infra.db.tables import outbox
from infra.partitions import PartitionedQueues
from infra.topology import COMMAND_PROCESSOR, DEAD_EXCHANGE
from tests.command_scenarios import ACTOR, SCENARIOS, command_envelope
from tests.processor_support import (
    BrokerDriver,
    CountingUnitOfWork,
    Deliveries,
    command_status,
    eventually,
    headers_of,
    processor_running,
    publish,
    ready_message_ids,
    running_processor,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aio_pika.abc import AbstractMessage, AbstractQueue, AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message
    from infra.settings import Settings
    from tests.command_scenarios import CommandDriver


@pytest.fixture
async def processor_engine(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """An engine for the processors under test (the `engine` fixture migrated the database)."""
    eng = create_engine(settings, pool_size=10, max_overflow=10)
    yield eng
    await eng.dispose()


@pytest.fixture
async def driver(
    settings: Settings,
    amqp: AbstractRobustConnection,
    engine: AsyncEngine,
    processor_engine: AsyncEngine,
) -> AsyncIterator[BrokerDriver]:
    """A driver with one processor consuming the command queue."""
    deliveries = Deliveries()
    async with running_processor(settings, processor_engine, deliveries):
        yield BrokerDriver(amqp, engine, deliveries)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_scenario_on_the_real_broker(
    scenario: Callable[[CommandDriver], Awaitable[None]], driver: BrokerDriver
) -> None:
    await scenario(driver)


@pytest.fixture
async def parked(amqp: AbstractRobustConnection) -> AsyncIterator[AbstractQueue]:
    """A private tap on `hisho.dead` seeing every message the processor parks."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(DEAD_EXCHANGE, COMMAND_PROCESSOR)
    yield queue
    await channel.close()


async def parked_copy(queue: AbstractQueue, message_id: str) -> AbstractMessage:
    """The parked copy of `message_id` (other tests' parked messages are skipped)."""

    async def find() -> AbstractMessage:
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            if message.message_id == message_id:
                return message
        raise AssertionError(f"{message_id} not parked yet")

    return await eventually(find)


def valid_command_body(**changes: Any) -> tuple[str, bytes]:
    policy = ApprovalPolicy(approvers=(ACTOR.principal,), required_approvals=1)
    envelope = command_envelope(CreateProject(project_id=uuid.uuid4(), name="P", policy=policy))
    doc = json.loads(catalog.encode(envelope))
    for key, value in changes.items():
        target = doc["data"] if key == "data_extra" else doc
        target.update(value if key == "data_extra" else {key: value})
    return str(envelope.id), json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("body_kind", "reason"),
    [
        ("garbage", "invalid message: <no type>: body is not JSON"),
        ("unknown_type", "invalid message: Bogus.type: unknown message type"),
        ("extra_field", "invalid message: CreateProject.colour: Extra inputs are not permitted"),
        (
            "event_as_command",
            "invalid message: ProjectCreated.type: not handled by command_processor",
        ),
    ],
)
async def test_invalid_messages_are_parked_with_the_reason_and_the_queue_keeps_moving(
    body_kind: str,
    reason: str,
    driver: BrokerDriver,
    parked: AbstractQueue,
    amqp: AbstractRobustConnection,
) -> None:
    message_id, body = {
        "garbage": (str(uuid.uuid4()), b"\x00not json{"),
        "unknown_type": valid_command_body(type="Bogus"),
        "extra_field": valid_command_body(data_extra={"colour": "red"}),
        "event_as_command": valid_command_body(type="ProjectCreated", data_extra={"owner": None}),
    }[body_kind]
    await publish(amqp, body, routing_key="CreateProject", message_id=message_id)
    copy = await parked_copy(parked, message_id)
    headers = headers_of(copy)
    assert headers[PARKED_REASON_HEADER].startswith(reason)
    assert headers[PARKED_CONSUMER_HEADER] == COMMAND_PROCESSOR
    assert headers[ORIGINAL_ROUTING_KEY_HEADER] == "CreateProject"
    assert PARKED_ERROR_HEADER in headers
    assert copy.body == body
    policy = ApprovalPolicy(approvers=(ACTOR.principal,), required_approvals=1)
    after = command_envelope(CreateProject(project_id=uuid.uuid4(), name="Next", policy=policy))
    await driver.send(after)
    assert (await driver.outcome(after.id)).status is CommandState.PROCESSED


async def test_a_rejected_command_is_acknowledged(
    settings: Settings,
    amqp: AbstractRobustConnection,
    engine: AsyncEngine,
    processor_engine: AsyncEngine,
) -> None:
    deliveries = Deliveries()
    envelope = command_envelope(SubmitPlan(plan_id=uuid.uuid4()))
    async with running_processor(settings, processor_engine, deliveries):
        driver = BrokerDriver(amqp, engine, deliveries)
        await driver.send(envelope)
        assert (await driver.outcome(envelope.id)).status is CommandState.REJECTED
        await driver.settle()
    # The processor is gone: an unacknowledged delivery would be back in its partition now.
    assert str(envelope.id) not in await ready_message_ids(amqp, partition_of(envelope))


def partition_of(envelope: Envelope[Message]) -> str:
    """The partition queue a command goes to (by its target aggregate)."""
    spec = CONSUMER.queue_spec()
    assert isinstance(spec, PartitionedQueues)
    return spec.queues[spec.partition_of(partition_key(envelope))]


async def test_competing_processors_on_one_plan_apply_every_vote_once_in_order(
    settings: Settings,
    amqp: AbstractRobustConnection,
    engine: AsyncEngine,
    processor_engine: AsyncEngine,
) -> None:
    deliveries = Deliveries()
    approvers = tuple(f"key:approver-{n}" for n in range(30))
    project_id, plan_id = uuid.uuid4(), uuid.uuid4()
    policy = ApprovalPolicy(approvers=approvers, required_approvals=len(approvers))
    step = HumanStep(step_id=uuid.uuid4(), title="t", assignee=ACTOR.principal, instructions="do")
    async with (
        running_processor(settings, processor_engine, deliveries, label="first"),
        running_processor(settings, processor_engine, deliveries, label="second"),
    ):
        driver = BrokerDriver(amqp, engine, deliveries)
        for setup in (
            CreateProject(project_id=project_id, name="Race", policy=policy),
            DraftPlan(plan_id=plan_id, project_id=project_id, title="T", steps=(step,)),
            SubmitPlan(plan_id=plan_id),
        ):
            envelope = command_envelope(setup)
            await driver.send(envelope)
            assert (await driver.outcome(envelope.id)).status is CommandState.PROCESSED
        votes = [
            command_envelope(ApprovePlan(plan_id=plan_id), actor=Actor.of(a)) for a in approvers
        ]
        for vote in votes:  # accepted one after another, each confirmed before the next
            await driver.send(vote)
        for vote in votes:
            assert (await driver.outcome(vote.id)).status is CommandState.PROCESSED
    versions = await plan_versions(engine, plan_id)
    assert versions == list(range(1, 2 + len(approvers) + 2))  # drafted, submitted, votes, approved
    state = await plan_state(engine, plan_id)
    assert state["approvals"] == list(approvers)  # decided in the order they were accepted
    assert state["status"] == "approved"
    # The plan's partition has one active consumer: one processor decided every vote, and
    # no vote met a rival's write (no version conflict, nothing retried).
    deciders = {
        label
        for label, handled in deliveries.by_processor.items()
        if any(vote.id in handled for vote in votes)
    }
    assert len(deciders) == 1, deciders
    assert deliveries.conflicts == 0


async def plan_versions(engine: AsyncEngine, plan_id: uuid.UUID) -> list[int]:
    query = (
        select(outbox.c.aggregate_version)
        .where(outbox.c.aggregate_id == plan_id)
        .order_by(outbox.c.aggregate_version)
    )
    async with engine.connect() as conn:
        return [int(v) for v in (await conn.execute(query)).scalars()]


async def plan_state(engine: AsyncEngine, plan_id: uuid.UUID) -> dict[str, Any]:
    query = select(aggregate_state.c.state).where(
        aggregate_state.c.aggregate_type == "plan", aggregate_state.c.aggregate_id == plan_id
    )
    async with engine.connect() as conn:
        return dict((await conn.execute(query)).scalar_one())


class FlakyUnitOfWork(CountingUnitOfWork):
    """The real unit of work whose inbox fails transiently for one message, `failures` times."""

    def __init__(
        self, engine: AsyncEngine, deliveries: Deliveries, flaky: dict[uuid.UUID, int]
    ) -> None:
        super().__init__(engine, deliveries)
        self._flaky = flaky

    @property
    def inbox(self) -> PgInbox:
        inner = super().inbox
        flaky = self._flaky

        class Flaky(PgInbox):
            async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
                if flaky.get(message_id, 0) > 0:
                    flaky[message_id] -= 1
                    raise ConnectionResetError("database went away")
                return await inner.claim(consumer, message_id)

        return Flaky()


async def test_a_transient_failure_outlasting_in_process_retries_parks_and_holds_its_plan(
    settings: Settings,
    amqp: AbstractRobustConnection,
    engine: AsyncEngine,
    processor_engine: AsyncEngine,
    parked: AbstractQueue,
) -> None:
    policy = ApprovalPolicy(approvers=(ACTOR.principal,), required_approvals=1)
    project_id, plan_id = uuid.uuid4(), uuid.uuid4()
    step = HumanStep(step_id=uuid.uuid4(), title="t", assignee=ACTOR.principal, instructions="do")
    project = command_envelope(CreateProject(project_id=project_id, name="P", policy=policy))
    draft = command_envelope(
        DraftPlan(plan_id=plan_id, project_id=project_id, title="T", steps=(step,))
    )
    later = [
        command_envelope(SubmitPlan(plan_id=plan_id)),
        command_envelope(ApprovePlan(plan_id=plan_id)),
    ]
    other = command_envelope(CreateProject(project_id=uuid.uuid4(), name="Q", policy=policy))
    flaky = {draft.id: CONSUMER.attempts}  # every in-process attempt of the first delivery
    deliveries = Deliveries()

    def units() -> FlakyUnitOfWork:
        return FlakyUnitOfWork(processor_engine, deliveries, flaky)

    async with processor_running(settings, processor_engine, units):
        driver = BrokerDriver(amqp, engine, deliveries)
        await driver.send(project)
        assert (await driver.outcome(project.id)).status is CommandState.PROCESSED
        await driver.send(draft)
        copy = await parked_copy(parked, str(draft.id))
        failed = await driver.outcome(draft.id)
        assert failed.status is CommandState.FAILED
        for envelope in [*later, other]:
            await driver.send(envelope)
        # Another aggregate flows; the plan's later commands wait behind the parked draft,
        # undecided (a `plan-not-found` for the submit would break their order).
        assert (await driver.outcome(other.id)).status is CommandState.PROCESSED
        held = await eventually(lambda: held_rows(engine, str(plan_id), 1 + len(later)))
        assert [row["message_id"] for row in held] == [draft.id] + [e.id for e in later]
        assert [row["parked"] for row in held] == [True, False, False]
        assert {row["reason"] for row in held[1:]} == {f"held: blocked by {draft.id}"}
        assert [await command_status(engine, e.id) for e in later] == [None, None]
        # The database is back; an operator re-drives the draft: it, then the rest, in order.
        assert await redrive(amqp, CONSUMER, message_id=str(draft.id)) == 1
        for envelope in [draft, *later]:
            await eventually(partial(_processed, engine, envelope.id))  # `failed` until then
        assert await held_rows(engine, str(plan_id), 0) == []
    headers = headers_of(copy)
    assert copy.message_id == str(draft.id)
    reason = "gave up after 5 attempts: ConnectionResetError: database went away"
    assert headers[PARKED_REASON_HEADER] == reason
    assert RETRIES_HEADER not in headers  # ordered: no delay queue, no retry round
    assert failed.problem is not None
    assert failed.problem["detail"] == reason
    assert flaky[draft.id] == 0
    events = [e for envelope in (draft, *later) for e in await driver.events_caused_by(envelope.id)]
    assert [(e.type, e.aggregate_version) for e in events] == [
        ("PlanDrafted", 1),
        ("PlanSubmitted", 2),
        ("PlanApprovalRecorded", 3),
        ("PlanApproved", 4),
    ]


async def _processed(engine: AsyncEngine, command_id: uuid.UUID) -> None:
    status = await command_status(engine, command_id)
    assert status is not None
    assert status.status is CommandState.PROCESSED, status.problem


async def held_rows(engine: AsyncEngine, key: str, count: int) -> list[dict[str, Any]]:
    """The processor's held rows of one aggregate, in order (asserting there are `count`)."""
    query = text(
        "SELECT message_id, parked, reason FROM consumer_held"
        " WHERE consumer = :consumer AND partition_key = :key ORDER BY seq"
    )
    async with engine.connect() as conn:
        result = await conn.execute(query, {"consumer": COMMAND_PROCESSOR, "key": key})
        rows = [dict(row) for row in result.mappings()]
    assert len(rows) == count, rows
    return rows
