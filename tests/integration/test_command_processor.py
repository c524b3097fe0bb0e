"""The command processor on real RabbitMQ and PostgreSQL: the shared scenarios, acks, parking,
and competing processors racing on one aggregate.

Each test runs its own in-process processor (the real router and unit of work). Anything it
binds is private to the test (exclusive queues); hisho's own queues are only consumed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any, cast

import pytest
from sqlalchemy import select

from consumers.command_processor import QUEUES, RUNTIME, command_broker, command_router
from events import catalog
from events.plan import ApprovePlan, DraftPlan, HumanStep, SubmitPlan
from events.project import ApprovalPolicy, CreateProject
from infra.consumer_runtime import (
    ORIGINAL_ROUTING_KEY_HEADER,
    PARKED_CONSUMER_HEADER,
    PARKED_ERROR_HEADER,
    PARKED_REASON_HEADER,
    RETRIES_HEADER,
    RETRY_REASON_HEADER,
)
from infra.db.command_status import CommandState
from infra.db.engine import create_engine
from infra.db.state_tables import aggregate_state
from infra.db.tables import outbox
from infra.topology import COMMAND_PROCESSOR, COMMAND_QUEUE, DEAD_EXCHANGE, RETRY_EXCHANGE
from tests.command_scenarios import SCENARIOS, command_envelope
from tests.processor_support import (
    BrokerDriver,
    CountingUnitOfWork,
    Deliveries,
    backlog_worked_off,
    eventually,
    headers_of,
    publish,
    running_processor,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aio_pika.abc import AbstractMessage, AbstractQueue, AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.db.command_unit import KeptInbox
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
    policy = ApprovalPolicy(approvers=("alice",), required_approvals=1)
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
        ("event_as_command", "invalid message: ProjectCreated.type: not a command hisho handles"),
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
        "event_as_command": valid_command_body(type="ProjectCreated"),
    }[body_kind]
    await publish(amqp, body, routing_key="CreateProject", message_id=message_id)
    copy = await parked_copy(parked, message_id)
    headers = headers_of(copy)
    assert headers[PARKED_REASON_HEADER].startswith(reason)
    assert headers[PARKED_CONSUMER_HEADER] == COMMAND_PROCESSOR
    assert headers[ORIGINAL_ROUTING_KEY_HEADER] == "CreateProject"
    assert PARKED_ERROR_HEADER in headers
    assert copy.body == body
    policy = ApprovalPolicy(approvers=("alice",), required_approvals=1)
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
    # The processor is gone: an unacknowledged delivery would be back in the queue now.
    assert str(envelope.id) not in await ready_message_ids(amqp)


async def ready_message_ids(amqp: AbstractRobustConnection) -> set[str]:
    """Ids of the messages ready in the command queue; they are all returned to it."""
    channel = await amqp.channel()
    try:
        queue = await channel.get_queue(COMMAND_QUEUE, ensure=False)
        ids: set[str] = set()
        while (message := await queue.get(fail=False)) is not None:
            ids.add(message.message_id or "")
        return ids
    finally:
        await channel.close()  # unacknowledged gets go back to the queue


async def test_competing_processors_racing_on_one_plan_apply_every_vote_once(
    settings: Settings,
    amqp: AbstractRobustConnection,
    engine: AsyncEngine,
    processor_engine: AsyncEngine,
) -> None:
    deliveries = Deliveries()
    approvers = tuple(f"approver-{n}" for n in range(30))
    project_id, plan_id = uuid.uuid4(), uuid.uuid4()
    policy = ApprovalPolicy(approvers=approvers, required_approvals=len(approvers))
    step = HumanStep(step_id=uuid.uuid4(), title="t", assignee="a", instructions="do")
    async with (
        running_processor(settings, processor_engine, deliveries),
        running_processor(settings, processor_engine, deliveries),
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
        votes = [command_envelope(ApprovePlan(plan_id=plan_id, approver=a)) for a in approvers]
        # All at once, so both processors hold votes on the same plan at the same time.
        await asyncio.gather(*(driver.send(vote) for vote in votes))
        for vote in votes:
            assert (await driver.outcome(vote.id)).status is CommandState.PROCESSED
    versions = await plan_versions(engine, plan_id)
    assert versions == list(range(1, 2 + len(approvers) + 2))  # drafted, submitted, votes, approved
    state = await plan_state(engine, plan_id)
    assert sorted(state["approvals"]) == sorted(approvers)
    assert state["status"] == "approved"
    # The race happened: some votes read a version a rival had moved on, and were retried.
    assert deliveries.conflicts > 0, "no vote met a version conflict: the processors did not race"


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
    def inbox(self) -> KeptInbox:
        inner = super().inbox
        flaky = self._flaky

        class Flaky:
            async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
                if flaky.get(message_id, 0) > 0:
                    flaky[message_id] -= 1
                    raise ConnectionResetError("database went away")
                return await inner.claim(consumer, message_id)

        return cast("KeptInbox", Flaky())


async def test_a_transient_failure_outlasting_in_process_retries_takes_the_delay_queue(
    settings: Settings,
    amqp: AbstractRobustConnection,
    engine: AsyncEngine,
    processor_engine: AsyncEngine,
) -> None:
    policy = ApprovalPolicy(approvers=("alice",), required_approvals=1)
    envelope = command_envelope(CreateProject(project_id=uuid.uuid4(), name="P", policy=policy))
    flaky = {envelope.id: RUNTIME.attempts}  # every in-process attempt of the first delivery
    channel = await amqp.channel()
    retried = await channel.declare_queue(exclusive=True, auto_delete=True)
    await retried.bind(RETRY_EXCHANGE, QUEUES.retry_routing_key(QUEUES.retry_delays_ms[0]))
    deliveries = Deliveries()
    router = command_router(lambda: FlakyUnitOfWork(processor_engine, deliveries, flaky))
    broker = command_broker(settings.amqp, router)
    async with broker:
        await broker.start()
        await backlog_worked_off(settings)
        driver = BrokerDriver(amqp, engine, deliveries)
        await driver.send(envelope)
        copy = await eventually(lambda: retry_copy(retried))
        assert (await driver.outcome(envelope.id)).status is CommandState.PROCESSED
    await channel.close()
    headers = headers_of(copy)
    assert copy.message_id == str(envelope.id)
    assert headers[RETRIES_HEADER] == 1
    assert headers[RETRY_REASON_HEADER] == "ConnectionResetError: database went away"
    assert flaky[envelope.id] == 0
    assert [e.type for e in await driver.events_caused_by(envelope.id)] == ["ProjectCreated"]


async def retry_copy(queue: AbstractQueue) -> AbstractMessage:
    message = await queue.get(fail=False, no_ack=True)
    assert message is not None, "no retry copy yet"
    return message
