"""Support for the command processor's tests on real servers: an in-process processor, a
driver that publishes commands and reads their effects from PostgreSQL, and a polling helper.

The processor is the framework's ordered consumer (`consumers.command_processor.CONSUMER`)
run in process as `hisho run processor` runs it: its router on the real broker, PostgreSQL
units of work (group commit and group load) and the PostgreSQL store of held messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import aio_pika
from sqlalchemy import select
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from consumers.command_processor import CONSUMER
from events import Actor, Envelope, Message, catalog
from infra.amqp import AmqpConnection, ConfirmedPublisher
from infra.clock import utc_now
from infra.consumers.held import PgHeldMessages
from infra.consumers.router import consumer_broker, consumer_router, consumer_runner
from infra.db.command_status import CommandState, CommandStatus, PgCommandStatuses
from infra.db.engine import create_session_factory
from infra.db.group_commit import GroupCommit
from infra.db.group_load import GroupLoad
from infra.db.inbox import PgInbox
from infra.db.outbox import envelope_from_row
from infra.db.people import SqlPeople
from infra.db.pg_uow import PgUnitOfWork
from infra.db.tables import outbox
from infra.db.uow import ConcurrencyError
from infra.message_context import MessageContext
from infra.partitions import PARTITION_HEADER, PartitionedQueues, envelope_slot
from infra.people import NewPerson, PersonExistsError
from infra.topology import COMMANDS_EXCHANGE, ConsumerQueues

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from types import TracebackType

    import httpx
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
    from faststream.rabbit import RabbitBroker
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.consumers import Consumer, Runner
    from infra.db.uow import UnitOfWork
    from infra.settings import Settings

T = TypeVar("T")
DEADLINE = 15.0
BACKLOG_DEADLINE = 120.0
_REGISTRAR = MessageContext.start(Actor.system("tests"))  # registers the scenarios' people


async def eventually(check: Callable[[], Awaitable[T]], deadline: float = DEADLINE) -> T:
    """Await `check()` until it stops raising `AssertionError` (or the deadline passes)."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(deadline),
        wait=wait_fixed(0.02),
        retry=retry_if_exception_type(AssertionError),
        reraise=True,
    ):
        with attempt:
            return await check()
    raise AssertionError("unreachable")  # pragma: no cover


def command_queues() -> tuple[str, ...]:
    """The queues the command processor reads: its partitions `hisho.command_processor.p<i>`."""
    spec = CONSUMER.queue_spec()
    assert isinstance(spec, PartitionedQueues)
    return spec.queues


async def queued_commands(channel: AbstractChannel) -> int:
    """How many commands are ready in the processor's partition queues, all together."""
    total = 0
    for name in command_queues():
        queue = await channel.declare_queue(name, passive=True)
        total += queue.declaration_result.message_count or 0
    return total


async def purge_commands(channel: AbstractChannel) -> int:
    """Drop every command ready in the processor's partition queues; how many went."""
    purged = 0
    for name in command_queues():
        queue = await channel.declare_queue(name, passive=True)
        purged += (await queue.purge()).message_count or 0
    return purged


async def consume_one(
    connection: AbstractConnection, queue_name: str, message_id: str, deadline: float = DEADLINE
) -> AbstractIncomingMessage:
    """Consume `queue_name` until `message_id` arrives; ack it, return the others unacked.

    A partition queue has a single active consumer, which `basic.get` cannot be: this one
    subscribes (it is the active one while no processor runs).
    """
    async with connection.channel() as channel:
        queue = await channel.declare_queue(queue_name, passive=True)
        async with asyncio.timeout(deadline), queue.iterator() as messages:
            async for message in messages:
                if message.message_id == message_id:
                    await message.ack()
                    return message
    raise AssertionError(f"{message_id} never reached {queue_name}")  # pragma: no cover


async def ready_message_ids(connection: AbstractConnection, queue_name: str) -> set[str]:
    """Ids of the messages ready in a partition queue now; they all go back to it."""
    async with connection.channel() as channel:
        queue = await channel.declare_queue(queue_name, passive=True)
        ready = queue.declaration_result.message_count or 0
        ids: set[str] = set()
        if ready == 0:
            return ids
        async with asyncio.timeout(DEADLINE), queue.iterator() as messages:
            async for message in messages:  # unacknowledged: requeued when the channel closes
                ids.add(message.message_id or "")
                if len(ids) >= ready:
                    break
        return ids


class Deliveries:
    """What the processors under test did: handled deliveries (by message id), conflicts met.

    `by_processor[label]` counts the deliveries each labelled processor handled.
    """

    def __init__(self) -> None:
        self.handled: Counter[uuid.UUID] = Counter()
        self.by_processor: dict[str, Counter[uuid.UUID]] = {}
        self.conflicts = 0


class _RecordingInbox(PgInbox):
    """The block's real inbox, noting the message id it is asked about."""

    def __init__(self, inner: PgInbox, unit: CountingUnitOfWork) -> None:
        super().__init__()
        self._inner = inner
        self._unit = unit

    async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
        self._unit.message_id = message_id
        return await self._inner.claim(consumer, message_id)


class CountingUnitOfWork(PgUnitOfWork):
    """The real unit of work, recording which message each cleanly ended block handled."""

    def __init__(
        self,
        engine: AsyncEngine,
        deliveries: Deliveries,
        *,
        label: str = "",
        group: GroupCommit | None = None,
        loads: GroupLoad | None = None,
    ) -> None:
        super().__init__(engine, group=group, loads=loads)
        self._deliveries = deliveries
        self._label = label
        self.message_id: uuid.UUID | None = None

    @property
    def inbox(self) -> PgInbox:
        """The real inbox, noting the message id it is asked about."""
        return _RecordingInbox(super().inbox, self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
        if exc_type is None and self.message_id is not None:
            self._deliveries.handled[self.message_id] += 1
            self._deliveries.by_processor.setdefault(self._label, Counter())[self.message_id] += 1
        elif exc_type is not None and issubclass(exc_type, ConcurrencyError):
            self._deliveries.conflicts += 1


def counting_units(
    engine: AsyncEngine, deliveries: Deliveries, label: str = ""
) -> Callable[[], UnitOfWork]:
    """A unit-of-work factory as the processor's: group commit and group load, counted."""
    group, loads = GroupCommit(), GroupLoad()
    return lambda: CountingUnitOfWork(engine, deliveries, label=label, group=group, loads=loads)


@asynccontextmanager
async def processor_running(
    settings: Settings, engine: AsyncEngine, unit: Callable[[], UnitOfWork]
) -> AsyncIterator[Runner]:
    """The command processor in this process with units from `unit`; yields its runner.

    The framework's runner, router and broker, as `hisho run processor` runs them (a
    confirmed publisher for the parking copies of released commands, the PostgreSQL store of
    held commands). It first works off whatever other tests left in the partition queues,
    so a test's own commands are not stuck behind someone else's backlog.
    """
    connection = AmqpConnection(settings.amqp)
    publisher = ConfirmedPublisher(connection)
    runner = consumer_runner(
        CONSUMER,
        unit,
        held=PgHeldMessages(engine),
        publisher=publisher,
        deps={"clock": utc_now, "people": SqlPeople(engine)},
    )
    broker: RabbitBroker = consumer_broker(settings.amqp, consumer_router(runner))
    try:
        await broker.start()
        await runner.release_stuck()  # as a starting processor does
        await backlog_worked_off(settings)
        yield runner
    finally:
        await broker.stop()
        await publisher.close()
        await connection.close()


@asynccontextmanager
async def running_processor(
    settings: Settings, engine: AsyncEngine, deliveries: Deliveries, *, label: str = ""
) -> AsyncIterator[Runner]:
    """A command processor in this process, counting what it handles in `deliveries`."""
    async with processor_running(
        settings, engine, counting_units(engine, deliveries, label)
    ) as runner:
        yield runner


async def backlog_worked_off(settings: Settings) -> None:
    """Wait until no command is ready in the processor's partition queues (bounded)."""
    connection = await aio_pika.connect(settings.amqp)
    try:
        channel = await connection.channel()

        async def empty() -> None:
            assert await queued_commands(channel) == 0, "commands still queued"

        await eventually(empty, BACKLOG_DEADLINE)
    finally:
        await connection.close()


async def earlier_messages_purged(settings: Settings, *consumers: Consumer) -> None:
    """Drop what earlier tests left in these unordered consumers' queues and delay queues.

    The test vhost outlives a test: a consumer's queue, once declared, collects every later
    test's events. A test that runs the consumer as a process starts it on an empty queue.
    """
    connection = await aio_pika.connect(settings.amqp)
    try:
        channel = await connection.channel()
        for consumer in consumers:
            spec = consumer.queue_spec()
            assert isinstance(spec, ConsumerQueues), f"{consumer.name} is ordered"
            for name in (spec.queue, *map(spec.retry_queue, spec.retry_delays_ms)):
                queue = await channel.declare_queue(name, passive=True)
                await queue.purge()
    finally:
        await connection.close()


async def publish(
    connection: AbstractConnection,
    body: bytes,
    *,
    routing_key: str,
    message_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> None:
    """Publish raw bytes to `hisho.commands` with a confirm, as the ingress does.

    A message without a `partition_slot` header goes to the first partition.
    """
    async with connection.channel(publisher_confirms=True) as channel:
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        message = aio_pika.Message(
            body,
            message_id=message_id or str(uuid.uuid4()),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=dict(headers or {}),
        )
        await exchange.publish(message, routing_key, mandatory=True)


async def publish_command(connection: AbstractConnection, envelope: Envelope[Message]) -> None:
    """Publish a command as the ingress does: its type, its id, its partition slot."""
    await publish(
        connection,
        catalog.encode(envelope),
        routing_key=catalog.entry(envelope.type).routing_key,
        message_id=str(envelope.id),
        headers={PARTITION_HEADER: envelope_slot(envelope)},
    )


async def command_status(engine: AsyncEngine, command_id: uuid.UUID) -> CommandStatus | None:
    """The recorded status of a command, or None."""
    async with create_session_factory(engine)() as session:
        return await PgCommandStatuses(session).get(command_id)


async def events_caused_by(engine: AsyncEngine, command_id: uuid.UUID) -> list[Envelope[Message]]:
    """Outbox envelopes caused by `command_id`, in insert order."""
    query = select(outbox).where(outbox.c.causation_id == command_id).order_by(outbox.c.seq)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [envelope_from_row(row) for row in rows]


class BrokerDriver:
    """`CommandDriver` over the real broker and database (tests/command_scenarios.py)."""

    def __init__(
        self, connection: AbstractConnection, engine: AsyncEngine, deliveries: Deliveries
    ) -> None:
        self._connection = connection
        self._engine = engine
        self._deliveries = deliveries
        self._sent: Counter[uuid.UUID] = Counter()

    async def send(self, envelope: Envelope[Message]) -> None:
        """Publish the envelope as the ingress publishes a command."""
        self._sent[envelope.id] += 1
        await publish_command(self._connection, envelope)

    async def outcome(self, command_id: uuid.UUID) -> CommandStatus:
        """Wait for the command's final status."""

        async def final() -> CommandStatus:
            status = await command_status(self._engine, command_id)
            assert status is not None, f"command {command_id} not answered yet"
            assert status.status is not CommandState.ACCEPTED
            return status

        return await eventually(final)

    async def settle(self) -> None:
        """Wait until the processors handled every delivery sent through this driver."""

        async def caught_up() -> None:
            for message_id, times in self._sent.items():
                assert self._deliveries.handled[message_id] >= times

        await eventually(caught_up)

    async def events_caused_by(self, command_id: uuid.UUID) -> list[Envelope[Message]]:
        """Outbox envelopes caused by the command."""
        return await events_caused_by(self._engine, command_id)

    async def register_person(self, principal_id: str) -> None:
        """Add the principal to the directory (once: another scenario may have)."""
        person = NewPerson(principal_id=principal_id, display_name=principal_id)
        with contextlib.suppress(PersonExistsError):
            await SqlPeople(self._engine).register(person, context=_REGISTRAR)


def headers_of(message: Any) -> dict[str, Any]:
    """A message's headers as a plain dict."""
    return dict(message.headers or {})


async def posted_and_processed(
    http: httpx.AsyncClient,
    token: str,
    command: str,
    body: Mapping[str, Any],
    *,
    deadline: float = DEADLINE,
) -> None:
    """POST a command with `token`; require its 202, then `processed` at its status URL."""
    auth = {"Authorization": f"Bearer {token}"}
    accepted = await http.post(f"/v1/commands/{command}", json=dict(body), headers=auth)
    assert accepted.status_code == 202, accepted.text

    async def done() -> None:
        status = (await http.get(accepted.headers["location"], headers=auth)).json()
        assert status["status"] == "processed", status

    await eventually(done, deadline=deadline)
