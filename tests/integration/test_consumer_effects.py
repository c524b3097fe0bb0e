"""The external-effects slot on the real broker, database and a local HTTP receiver.

Claim before the effect, the effect keyed by the envelope id, record after: a failure between
the effect and the record performs it again with the same key (at least once, one id), and
once recorded no copy of the message performs it again.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from events.task import TaskRetried
from infra.consumers import Consumer
from infra.consumers.effects import PgEffects, record_effect
from infra.consumers.router import consumer_broker, consumer_router, consumer_runner
from infra.db.pg_uow import PgUnitOfWork
from infra.topology import declare_topology
from tests.components_support import free_port
from tests.consumer_harness import Live
from tests.consumer_support import Failures, task_retried

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope
    from infra.consumers.effects import Effects
    from infra.db.uow import UnitOfWork
    from infra.settings import Settings


class Receiver:
    """A local HTTP endpoint remembering the idempotency key of every request."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:  # noqa: ARG002
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        self.keys.append(headers.get(b"idempotency-key", b"").decode())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        receiver, host="127.0.0.1", port=port, log_level="error", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.should_exit = True
        await task


def effect_consumer(name: str, url: str, failures: Failures) -> Consumer:
    async def handle_task_retried(
        envelope: Envelope[TaskRetried],
        uow: UnitOfWork,
        *,
        effects: Effects,
        http: httpx.AsyncClient,
    ) -> None:
        claim = await effects.claim(name, envelope.id)  # 1. committed before the effect
        if claim.done:
            return
        response = await http.post(url, headers={"Idempotency-Key": claim.key})  # 2.
        failures.check(envelope.id)  # a failure after the effect, before its record
        record_effect(uow, name, envelope.id, {"status": response.status_code})  # 3.

    return Consumer(name=name, handlers={TaskRetried: handle_task_retried}, attempts=3)


async def test_an_effect_cut_short_before_its_record_runs_again_with_its_key_and_never_after(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    receiver, failures = Receiver(), Failures()
    name = f"effects_{uuid.uuid4().hex[:8]}"
    async with serving(receiver) as url, httpx.AsyncClient() as http:
        consumer = effect_consumer(name, url, failures)
        await declare_topology(amqp, [consumer.queue_spec()])
        channel = await amqp.channel(publisher_confirms=True)
        runner = consumer_runner(
            consumer,
            lambda: PgUnitOfWork(engine),
            deps={"effects": PgEffects(engine), "http": http},
        )
        broker = consumer_broker(settings.amqp, consumer_router(runner))
        await broker.start()
        try:
            live = Live(consumer, runner, engine, amqp, channel)
            event = task_retried(uuid.uuid4(), 1)
            failures.transient[event.id] = 1  # the first attempt fails after its POST
            await live.publish(event)
            for _ in range(400):
                if await _state(engine, name, event.id) == ("done", 2):
                    break
                await asyncio.sleep(0.05)
            assert await _state(engine, name, event.id) == ("done", 2)
            assert receiver.keys == [str(event.id), str(event.id)]  # twice, one key

            await live.publish(event)  # a copy after the record: no effect
            marker = task_retried(uuid.uuid4(), 1)
            await live.publish(marker)
            for _ in range(400):
                if await _state(engine, name, marker.id) == ("done", 1):
                    break
                await asyncio.sleep(0.05)
            assert receiver.keys == [str(event.id), str(event.id), str(marker.id)]
        finally:
            await broker.stop()
            await channel.close()


async def _state(
    engine: AsyncEngine, consumer: str, message_id: uuid.UUID
) -> tuple[str, int] | None:
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        row = await driver.fetchrow(
            "SELECT state, attempts FROM consumer_effects WHERE consumer = $1 AND message_id = $2",
            consumer,
            message_id,
        )
    return None if row is None else (row["state"], row["attempts"])
