"""The parked-message console with an ORDERED consumer: re-driving a parked message releases
the messages held behind it, in order; discarding it lets its key flow again.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from events import Actor
from infra.message_context import MessageContext
from tests.consumer_harness import running
from tests.consumer_support import Failures, demo_consumer, task_retried
from tests.parked_support import console, until

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

OPERATOR = "key:00000000000000ae"


async def test_a_console_redrive_releases_what_an_ordered_consumer_held_in_order(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    failures = Failures()
    consumer = demo_consumer(failures, name=f"ordered_{uuid.uuid4().hex[:8]}", ordered=True)
    async with (
        running(consumer, engine, amqp, settings.amqp) as live,
        console(engine, settings.amqp) as parking,
    ):
        task = uuid.uuid4()
        events = [task_retried(task, n) for n in range(1, 5)]
        failures.poison.add(events[1].id)
        for event in events:
            await live.publish(event)
        await live.wait_for(lambda found: [m for m, _ in found] == [events[0].id])

        async def held_back() -> bool:
            return len(await live.held()) == 3

        await until(held_back, "2 parked and 3, 4 held")
        record = await parking.show(str(events[1].id))
        assert (record.state, record.redrive_exchange) == (
            "parked",
            f"hisho.{consumer.name}.partitioned",
        )
        failures.poison.clear()
        await parking.redrive(str(events[1].id), by=OPERATOR)
        effects = await live.wait_for(lambda found: len(found) == len(events))
        assert [m for m, _ in effects] == [e.id for e in events]
        assert await live.held() == []
        assert (await parking.show(str(events[1].id))).state == "redriven"


async def test_discarding_an_ordered_consumers_parked_message_lets_its_key_flow_again(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    failures = Failures()
    consumer = demo_consumer(failures, name=f"ordered_{uuid.uuid4().hex[:8]}", ordered=True)
    async with (
        running(consumer, engine, amqp, settings.amqp) as live,
        console(engine, settings.amqp) as parking,
    ):
        task = uuid.uuid4()
        first, bad, held = (task_retried(task, n) for n in range(1, 4))
        failures.poison.add(bad.id)
        for event in (first, bad, held):
            await live.publish(event)

        async def held_back() -> bool:
            return len(await live.held()) == 2

        await until(held_back, "the bad one parked and the next held")
        context = MessageContext.start(Actor.of(OPERATOR, admin=True))
        await parking.discard(str(bad.id), reason="cannot be applied", context=context)
        assert [row["message_id"] for row in await live.held()] == [held.id]
        later = task_retried(task, 4)
        await live.publish(later)  # the next message of the key releases what waited
        effects = await live.wait_for(lambda found: len(found) == 3)
        assert [m for m, _ in effects] == [first.id, held.id, later.id]
        assert await live.held() == []
