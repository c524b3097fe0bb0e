"""The test consumer on the real broker and database: run it in process, publish, watch.

`running(consumer, ...)` declares the consumer's queues with `declare_topology`, runs its
FastStream router (the framework's, unchanged) with PostgreSQL units of work, and yields a
`Live` to publish events as the relay would (routing key, `partition_slot` header,
message id) and to read the effects and the parking queue.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika

from events import Envelope, Message, catalog
from infra.amqp import AmqpConnection, ConfirmedPublisher
from infra.consumers.held import PgHeldMessages
from infra.consumers.router import consumer_broker, consumer_router, consumer_runner
from infra.db.group_commit import GroupCommit
from infra.db.group_load import GroupLoad
from infra.db.pg_uow import PgUnitOfWork
from infra.partitions import PARTITION_HEADER, envelope_slot
from infra.topology import EVENTS_EXCHANGE, declare_topology
from tests.consumer_support import CREATE_DEMO_EFFECTS

if TYPE_CHECKING:
    import uuid
    from collections.abc import AsyncIterator, Callable, Mapping

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.consumers import Consumer, Runner


@dataclass
class Live:
    """A running test consumer."""

    consumer: Consumer
    runner: Runner
    engine: AsyncEngine
    amqp: AbstractRobustConnection
    channel: aio_pika.abc.AbstractChannel

    async def publish(self, envelope: Envelope[Message]) -> None:
        """Publish as the relay does: persistent, confirmed, with the partition slot."""
        exchange = await self.channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        message = aio_pika.Message(
            catalog.encode(envelope),
            message_id=str(envelope.id),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={PARTITION_HEADER: envelope_slot(envelope)},
        )
        await exchange.publish(message, routing_key=catalog.entry(envelope.type).routing_key)

    async def effects(self) -> list[tuple[uuid.UUID, str]]:
        """The effect rows of this consumer's messages, in the order they were applied."""
        rows = await self._fetch(
            "SELECT e.message_id, e.partition_key FROM demo_effects e JOIN inbox i"
            " ON i.message_id = e.message_id AND i.consumer = $1 ORDER BY e.seq"
        )
        return [(row[0], row[1]) for row in rows]

    async def _fetch(self, sql: str) -> list[Any]:
        """Rows of `sql`, whose $1 is this consumer's name."""
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            return list(await driver.fetch(sql, self.consumer.name))

    async def wait_for(
        self, check: Callable[[list[tuple[uuid.UUID, str]]], bool], timeout: float = 20.0
    ) -> list[tuple[uuid.UUID, str]]:
        """Poll the effects until `check` holds (or fail after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            effects = await self.effects()
            if check(effects):
                return effects
            if time.monotonic() > deadline:
                raise AssertionError(f"effects never matched: {effects}")
            await asyncio.sleep(0.05)

    async def parked(
        self, count: int, timeout: float = 20.0
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Wait for `count` messages in the parking queue; return them (left there, unacked)."""
        queue = await self.channel.get_queue(self.consumer.queue_spec().parked, ensure=False)
        deadline = time.monotonic() + timeout
        while True:
            declared = await self.channel.declare_queue(queue.name, passive=True)
            if (declared.declaration_result.message_count or 0) >= count:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} parked messages never arrived")
            await asyncio.sleep(0.05)
        messages = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            messages.append(message)
        for message in messages:
            await message.nack(requeue=True)
        return messages

    async def held(self) -> list[dict[str, Any]]:
        """This consumer's held rows, in order."""
        rows = await self._fetch(
            "SELECT message_id, parked, reason, headers FROM consumer_held"
            " WHERE consumer = $1 ORDER BY seq"
        )
        return [
            {
                **dict(row),
                "headers": json.loads(row["headers"])
                if isinstance(row["headers"], str)
                else row["headers"],
            }
            for row in rows
        ]


@asynccontextmanager
async def running(
    consumer: Consumer,
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,
    amqp_url: str,
    *,
    deps: Mapping[str, Any] | None = None,
) -> AsyncIterator[Live]:
    """Declare, start and (at the end) stop the test consumer (`deps`: its injections)."""
    async with engine.begin() as connection:
        await connection.exec_driver_sql(CREATE_DEMO_EFFECTS)
    await declare_topology(amqp, [consumer.queue_spec()])
    group, loads = GroupCommit(), GroupLoad()
    broker_connection = AmqpConnection(amqp_url)
    publisher = ConfirmedPublisher(broker_connection)
    channel = await amqp.channel(publisher_confirms=True)
    runner = consumer_runner(
        consumer,
        lambda: PgUnitOfWork(engine, group=group, loads=loads),
        held=PgHeldMessages(engine) if consumer.ordered else None,
        publisher=publisher,
        deps=deps,
    )
    broker = consumer_broker(amqp_url, consumer_router(runner))
    await broker.start()
    try:
        yield Live(consumer, runner, engine, amqp, channel)
    finally:
        await broker.stop()
        await channel.close()
        await publisher.close()
        await broker_connection.close()
