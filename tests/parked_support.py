"""Real parked messages for the console's tests: the demo consumer parks, the console reads.

`parked_messages(...)` runs a demo consumer (tests/consumer_support.py) on the real broker
and database, publishes events of which the chosen ones fail for good (poison: ValueError)
or transiently past every retry (ConnectionError), and waits until each is parked (its
copy in the parking queue; its record was written before). `console(...)` is the console
on the same servers, as the CLI and the ingress build it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.amqp import AmqpConnection, ConfirmedPublisher
from infra.db.parked import SqlParkedMessages
from infra.parked import ParkedConsole
from infra.parked_broker import AmqpParkedBroker
from tests.consumer_harness import Live, running
from tests.consumer_support import Failures, demo_consumer, task_retried

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message


@dataclass
class Parked:
    """A running demo consumer with parked messages: which failed how."""

    live: Live
    failures: Failures
    poison: list[Envelope[Message]]
    flaky: list[Envelope[Message]]

    @property
    def name(self) -> str:
        """The consumer's (unique) name."""
        return self.live.consumer.name

    async def copies(self) -> int:
        """How many copies its parking queue holds."""
        queue = self.live.consumer.queue_spec().parked
        async with self.live.amqp.channel() as channel:  # fresh: a robust one caches counts
            declared = await channel.declare_queue(queue, passive=True)
            return declared.declaration_result.message_count or 0

    async def effects_of(self, envelope: Envelope[Message]) -> int:
        """How many effects this message had."""
        return [m for m, _ in await self.live.effects()].count(envelope.id)


def consumer_name() -> str:
    """A fresh demo consumer name."""
    return f"demo_{uuid.uuid4().hex[:8]}"


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Poll `check` until true (fail naming `what`)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def parked_messages(
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,
    amqp_url: str,
    *,
    poison: int = 1,
    flaky: int = 0,
    ordered: bool = False,
) -> AsyncIterator[Parked]:
    """A demo consumer that parked `poison` + `flaky` messages (one effect row each when fixed)."""
    failures = Failures()
    consumer = demo_consumer(failures, name=consumer_name(), ordered=ordered, delays=(50,))
    async with running(consumer, engine, amqp, amqp_url) as live:
        poisoned = [task_retried(uuid.uuid4(), 1) for _ in range(poison)]
        flakes = [task_retried(uuid.uuid4(), 1) for _ in range(flaky)]
        failures.poison.update(event.id for event in poisoned)
        failures.transient.update({event.id: 1_000 for event in flakes})
        parked = Parked(live, failures, poisoned, flakes)
        for event in (*poisoned, *flakes):
            await live.publish(event)

        async def all_parked() -> bool:
            return await parked.copies() >= poison + flaky

        await until(all_parked, f"{poison + flaky} parked messages")
        yield parked


@contextlib.asynccontextmanager
async def console(
    engine: AsyncEngine, amqp_url: str, *consumers: str, **options: Any
) -> AsyncIterator[ParkedConsole]:
    """The console on the real servers (its own connection and confirmed publisher)."""
    connection = AmqpConnection(amqp_url)
    publisher = ConfirmedPublisher(connection)
    broker = AmqpParkedBroker(connection.connected, publisher)
    try:
        yield ParkedConsole(SqlParkedMessages(engine), broker, consumers=consumers, **options)
    finally:
        await publisher.close()
        await connection.close()
