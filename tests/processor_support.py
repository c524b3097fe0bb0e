"""Support for the command processor's tests on real servers: an in-process processor, a
driver that publishes commands and reads their effects from PostgreSQL, and a polling helper.
"""

from __future__ import annotations

import uuid
from collections import Counter
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import aio_pika
from sqlalchemy import select
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from consumers.command_processor import command_broker, command_router
from events import Envelope, Message, catalog
from infra.db.command_status import CommandState, CommandStatus, SqlCommandStatuses
from infra.db.command_unit import KeptInbox, SqlAggregateUnitOfWork
from infra.db.engine import create_session_factory
from infra.db.outbox import envelope_from_row
from infra.db.repositories import ConcurrencyError
from infra.db.tables import outbox
from infra.topology import COMMAND_QUEUE, COMMANDS_EXCHANGE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from types import TracebackType

    from aio_pika.abc import AbstractConnection
    from faststream.rabbit import RabbitBroker
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

T = TypeVar("T")
DEADLINE = 15.0
BACKLOG_DEADLINE = 120.0


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


class Deliveries:
    """What the processors under test did: handled deliveries (by message id), conflicts met."""

    def __init__(self) -> None:
        self.handled: Counter[uuid.UUID] = Counter()
        self.conflicts = 0


class _RecordingInbox:
    def __init__(self, inner: KeptInbox, unit: CountingUnitOfWork) -> None:
        self._inner = inner
        self._unit = unit

    async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
        self._unit.message_id = message_id
        return await self._inner.claim(consumer, message_id)


class CountingUnitOfWork(SqlAggregateUnitOfWork):
    """The real unit of work, recording which message each cleanly ended block handled."""

    def __init__(self, engine: AsyncEngine, deliveries: Deliveries) -> None:
        super().__init__(engine)
        self._deliveries = deliveries
        self.message_id: uuid.UUID | None = None

    @property
    def inbox(self) -> KeptInbox:
        """The real inbox, noting the message id it is asked about."""
        return cast("KeptInbox", _RecordingInbox(super().inbox, self))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
        if exc_type is None and self.message_id is not None:
            self._deliveries.handled[self.message_id] += 1
        elif exc_type is not None and issubclass(exc_type, ConcurrencyError):
            self._deliveries.conflicts += 1


@asynccontextmanager
async def running_processor(
    settings: Settings, engine: AsyncEngine, deliveries: Deliveries
) -> AsyncIterator[RabbitBroker]:
    """A command processor in this process (the real router on its own connection).

    It first works off whatever other tests left in the command queue, so a test's own
    commands are not stuck behind someone else's backlog.
    """
    router = command_router(lambda: CountingUnitOfWork(engine, deliveries))
    broker = command_broker(settings.amqp, router)
    await broker.start()
    try:
        await backlog_worked_off(settings)
        yield broker
    finally:
        await broker.stop()


async def backlog_worked_off(settings: Settings) -> None:
    """Wait until no command is ready in the command queue (bounded)."""
    connection = await aio_pika.connect(settings.amqp)
    try:
        channel = await connection.channel()

        async def empty() -> None:
            queue = await channel.declare_queue(COMMAND_QUEUE, passive=True)
            assert queue.declaration_result.message_count == 0, "commands still queued"

        await eventually(empty, BACKLOG_DEADLINE)
    finally:
        await connection.close()


async def publish(
    connection: AbstractConnection,
    body: bytes,
    *,
    routing_key: str,
    message_id: str | None = None,
) -> None:
    """Publish raw bytes to `hisho.commands` with a confirm, as the ingress does."""
    async with connection.channel(publisher_confirms=True) as channel:
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        message = aio_pika.Message(
            body,
            message_id=message_id or str(uuid.uuid4()),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(message, routing_key, mandatory=True)


async def command_status(engine: AsyncEngine, command_id: uuid.UUID) -> CommandStatus | None:
    """The recorded status of a command, or None."""
    async with create_session_factory(engine)() as session:
        return await SqlCommandStatuses(session).get(command_id)


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
        """Publish the envelope as a command message."""
        self._sent[envelope.id] += 1
        body = catalog.encode(envelope)
        await publish(
            self._connection, body, routing_key=envelope.type, message_id=str(envelope.id)
        )

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


def headers_of(message: Any) -> dict[str, Any]:
    """A message's headers as a plain dict."""
    return dict(message.headers or {})
