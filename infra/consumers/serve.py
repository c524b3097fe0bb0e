"""Run one declared consumer until told to stop: what `hisho run <name>` does for a consumer.

The composition root (`hisho.consumers`) gives it its resources: the process's AMQP
connection (FastStream consumes on it), its confirmed publisher (it parks released messages
that fail), a unit-of-work factory (PostgreSQL, with group commit and group load) and, for
an ordered consumer, the store of held messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from infra.consumers.router import consumer_broker, consumer_router, consumer_runner
from infra.readiness import notify_ready

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Mapping

    from aio_pika.abc import AbstractRobustConnection

    from infra.amqp import ConfirmedPublisher
    from infra.consumers.declaration import Consumer
    from infra.consumers.held import HeldMessages
    from infra.db.uow import UnitOfWork

log = structlog.get_logger("hisho.consumer")


@dataclass(frozen=True)
class ConsumerResources:
    """What a consumer runs with; the composition root builds it."""

    amqp_url: str
    connection: Callable[[], Awaitable[AbstractRobustConnection]]  # the process's, once up
    publisher: ConfirmedPublisher
    unit: Callable[[], UnitOfWork]
    held: HeldMessages
    deps: Mapping[str, Any] = field(default_factory=dict)  # what handlers ask for by name


async def run_consumer(
    consumer: Consumer, resources: ConsumerResources, stop: asyncio.Event
) -> None:
    """Consume until `stop` is set; in-flight messages finish (bounded) before it returns."""
    runner = consumer_runner(
        consumer,
        resources.unit,
        held=resources.held if consumer.ordered is not None else None,
        publisher=resources.publisher,
        deps=resources.deps,
    )
    router = consumer_router(runner)
    broker = consumer_broker(resources.amqp_url, router, connection=resources.connection)
    try:
        await broker.start()
        await runner.release_stuck()  # a release a crash cut short goes on
        notify_ready(consumer.command or consumer.name)
        log.info("consumer running", consumer=consumer.name, ordered=consumer.ordered is not None)
        await stop.wait()
    finally:
        await broker.stop()  # stops consuming, waits for in-flight messages (graceful)
