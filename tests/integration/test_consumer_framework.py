"""The consumer framework's scenarios on the real broker and database (the fakes' twin:
tests/unit/test_consumer_framework.py): the test consumer declares nothing but its name and
handler, and gets its queues, one effect per message, retries, parking and re-drive.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from infra.consumers.redrive import redrive
from infra.consumers.runtime import PARKED_CONSUMER_HEADER, PARKED_REASON_HEADER
from infra.topology import RETRY_EXCHANGE, ConsumerQueues
from tests.consumer_harness import running
from tests.consumer_support import Failures, demo_consumer, task_retried

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings


def _name() -> str:
    return f"demo_{uuid.uuid4().hex[:8]}"


async def test_declare_topology_declares_the_consumers_queues(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    consumer = demo_consumer(Failures(), name=_name(), delays=(200, 400))
    async with running(consumer, engine, amqp, settings.amqp) as live:
        spec = consumer.queue_spec()
        assert isinstance(spec, ConsumerQueues)
        for queue in (spec.queue, spec.parked, spec.retry_queue(200), spec.retry_queue(400)):
            declared = await live.channel.declare_queue(queue, passive=True)
            assert declared.name == queue
        await live.channel.get_exchange(RETRY_EXCHANGE, ensure=True)


async def test_a_redelivered_message_has_one_effect(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    consumer = demo_consumer(Failures(), name=_name())
    async with running(consumer, engine, amqp, settings.amqp) as live:
        event, marker = task_retried(uuid.uuid4(), 1), task_retried(uuid.uuid4(), 1)
        for _ in range(3):  # a second publish, a redelivery: the same message id
            await live.publish(event)
        await live.publish(marker)
        effects = await live.wait_for(lambda found: marker.id in {m for m, _ in found})
        await asyncio.sleep(0.3)
        assert [m for m, _ in await live.effects()].count(event.id) == 1
        assert len(effects) <= 2


async def test_a_transient_failure_is_retried_to_one_effect(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    failures = Failures()
    consumer = demo_consumer(failures, name=_name(), delays=(200,))
    async with running(consumer, engine, amqp, settings.amqp) as live:
        event = task_retried(uuid.uuid4(), 1)
        failures.transient[event.id] = 4  # 3 in-process attempts fail, then the delay queue
        await live.publish(event)
        effects = await live.wait_for(lambda found: len(found) == 1)
        assert effects[0][0] == event.id
        assert failures.calls[event.id] == 5


async def test_poison_is_parked_with_its_reason_while_later_messages_flow_and_a_redrive_applies_it(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    failures = Failures()
    consumer = demo_consumer(failures, name=_name())
    async with running(consumer, engine, amqp, settings.amqp) as live:
        poison, later = task_retried(uuid.uuid4(), 1), task_retried(uuid.uuid4(), 1)
        failures.poison.add(poison.id)
        await live.publish(poison)
        await live.publish(later)
        await live.wait_for(lambda found: [m for m, _ in found] == [later.id])
        (parked,) = await live.parked(1)
        headers = parked.headers or {}
        assert headers[PARKED_REASON_HEADER] == f"unexpected error: ValueError: poison {poison.id}"
        assert headers[PARKED_CONSUMER_HEADER] == consumer.name
        failures.poison.clear()  # the bug is fixed
        assert await redrive(amqp, consumer) == 1
        await live.wait_for(lambda found: [m for m, _ in found] == [later.id, poison.id])
        assert await redrive(amqp, consumer) == 0  # nothing parked any more


async def test_a_delayed_retry_does_not_block_later_messages(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    failures = Failures()
    consumer = demo_consumer(failures, name=_name(), delays=(60_000,))
    async with running(consumer, engine, amqp, settings.amqp) as live:
        waiting = task_retried(uuid.uuid4(), 1)
        failures.transient[waiting.id] = 10  # into the 60 s delay queue after 3 attempts
        await live.publish(waiting)
        for _ in range(200):  # three in-process attempts, then the 60 s delay queue
            if failures.calls.get(waiting.id) == 3:
                break
            await asyncio.sleep(0.05)
        later = [task_retried(uuid.uuid4(), 1) for _ in range(1_000)]
        await asyncio.gather(*(live.publish(event) for event in later))
        effects = await live.wait_for(lambda found: len(found) == 1_000, timeout=60)
        assert {m for m, _ in effects} == {event.id for event in later}
        assert failures.calls[waiting.id] == 3  # still waiting for its delay, blocking nobody
