"""Ordered consumers on the real broker and database: a parked message holds its key back.

Events 1..5 of one aggregate, 2 poisoned: 1 is applied, 2 parked, 3..5 held behind it, while
other aggregates' events flow; re-driving 2 applies 2..5, in order.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from infra.consumers.redrive import redrive
from infra.consumers.runtime import PARKED_REASON_HEADER
from tests.consumer_harness import running
from tests.consumer_support import Failures, demo_consumer, task_retried

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings


async def test_a_parked_event_holds_its_aggregate_and_a_redrive_releases_the_rest_in_order(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    failures = Failures()
    consumer = demo_consumer(failures, name=f"ordered_{uuid.uuid4().hex[:8]}", ordered=True)
    async with running(consumer, engine, amqp, settings.amqp) as live:
        task = uuid.uuid4()
        events = [task_retried(task, n) for n in range(1, 6)]
        others = [task_retried(uuid.uuid4(), 1) for _ in range(20)]
        failures.poison.add(events[1].id)
        for event in events:
            await live.publish(event)
        for event in others:
            await live.publish(event)

        effects = await live.wait_for(lambda found: len(found) == 1 + len(others))
        assert [m for m, key in effects if key == str(task)] == [events[0].id]
        assert {m for m, key in effects if key != str(task)} == {e.id for e in others}
        held = await live.held()
        assert [row["message_id"] for row in held] == [e.id for e in events[1:]]
        assert [row["parked"] for row in held] == [True, False, False, False]
        assert all(row["reason"] == f"held: blocked by {events[1].id}" for row in held[1:])
        (parked,) = await live.parked(1)
        reason = (parked.headers or {})[PARKED_REASON_HEADER]
        assert isinstance(reason, str)
        assert reason.startswith("unexpected error: ValueError")

        failures.poison.clear()
        assert await redrive(amqp, consumer) == 1
        effects = await live.wait_for(lambda found: len(found) == len(events) + len(others))
        assert [m for m, key in effects if key == str(task)] == [e.id for e in events]
        assert await live.held() == []
