"""The workflow consumer's framework scenarios (tests/workflow_scenarios.py) on the real broker
and database: its framework router and partition queues, PostgreSQL units, the parking queue
and `redrive`. Their twin on fakes: tests/unit/test_workflow_consumer_scenarios.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from infra.consumers.redrive import redrive
from infra.consumers.runtime import PARKED_REASON_HEADER
from infra.db.outbox import envelope_from_row
from infra.db.tables import outbox
from tests.consumer_harness import running
from tests.consumer_support import Failures
from tests.workflow_scenarios import SCENARIOS, workflow_consumer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message
    from infra.settings import Settings
    from tests.consumer_harness import Live
    from tests.workflow_scenarios import Backend

DEADLINE = 20.0


class BrokerBackend:
    """`Backend` over the consumer harness's `Live` (tests/consumer_harness.py)."""

    def __init__(self, live: Live, failures: Failures, amqp: AbstractRobustConnection) -> None:
        self.live, self.failures, self.amqp = live, failures, amqp

    async def deliver(self, envelope: Envelope[Message]) -> None:
        await self.live.publish(envelope)

    async def sent(self, cause: Envelope[Message], count: int) -> list[Envelope[Message]]:
        deadline = time.monotonic() + DEADLINE
        while len(found := await self._caused_by(cause)) < count:
            assert time.monotonic() < deadline, f"{count} commands never came: {found}"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a doubled effect would show now
        return await self._caused_by(cause)

    async def _caused_by(self, cause: Envelope[Message]) -> list[Envelope[Message]]:
        query = select(outbox).where(outbox.c.causation_id == cause.id).order_by(outbox.c.seq)
        async with self.live.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [envelope_from_row(row) for row in rows]

    async def parked_reason(self, envelope: Envelope[Message]) -> str:
        """Read the parking queue (a fresh channel each look: a declared queue is cached)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            async with self.amqp.channel() as channel:
                queue = await channel.declare_queue(
                    self.live.consumer.queue_spec().parked, passive=True
                )
                messages = []
                while (message := await queue.get(no_ack=False, fail=False)) is not None:
                    messages.append(message)
                for message in messages:
                    await message.nack(requeue=True)  # left there for `redrive`
            for message in messages:
                if message.message_id == str(envelope.id):
                    reason: Any = (message.headers or {})[PARKED_REASON_HEADER]
                    return str(reason)
            assert time.monotonic() < deadline, f"{envelope.id} never parked"
            await asyncio.sleep(0.05)

    async def redrive(self, envelope: Envelope[Message]) -> None:
        assert envelope.id not in {e.causation_id for e in await self._all()}  # not applied yet
        assert await redrive(self.amqp, self.live.consumer) == 1

    async def _all(self) -> list[Envelope[Message]]:
        query = select(outbox).order_by(outbox.c.seq.desc()).limit(200)
        async with self.live.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [envelope_from_row(row) for row in rows]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_workflow_consumer_scenario_on_the_broker(
    scenario: Callable[[Backend], Awaitable[None]],
    engine: AsyncEngine,
    amqp: AbstractRobustConnection,
    settings: Settings,
) -> None:
    failures = Failures()
    consumer = workflow_consumer(failures, name=f"workflow_{uuid.uuid4().hex[:8]}")
    async with running(consumer, engine, amqp, settings.amqp) as live:
        await scenario(BrokerBackend(live, failures, amqp))
