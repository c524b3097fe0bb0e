"""The FastStream side of a consumer: its router, derived from the declaration.

`consumer_router(consumer, runner)` subscribes to the consumer's queue (unordered: prefetch
`consumer.prefetch`, messages handled concurrently) or to each of its partitions (ordered:
prefetch 1 per partition channel, so a partition's messages are handled one after another
while partitions run in parallel), with the runtime middleware (retry → delay → parking),
`AckPolicy.NACK_ON_ERROR` and a decoder that keeps the body and headers beside the envelope.
Subscribers only adapt a delivery to `Runner.deliver`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from aiormq import spec
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitQueue, RabbitRouter

from events import Envelope, catalog
from events import Message as Payload
from infra.consumers.runner import Runner
from infra.consumers.runtime import (
    runtime_middleware,
    settled_headers,
)
from infra.partitions import PartitionedQueues
from infra.topology import DEAD_EXCHANGE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from aio_pika import RobustConnection
    from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
    from faststream.message import StreamMessage

    from infra.amqp import ConfirmedPublisher
    from infra.consumers.declaration import Consumer
    from infra.consumers.held import HeldMessages
    from infra.consumers.runtime import Settlement
    from infra.db.uow import UnitOfWork

SHUTDOWN_GRACE = 8.0  # seconds in-flight messages get after SIGTERM (`hisho run` allows 10)
PARK_CONFIRM_TIMEOUT = 5.0  # seconds a parked copy of a released message waits for its confirm


@dataclass(frozen=True)
class Delivery:
    """A decoded message with what the runner needs of its delivery."""

    envelope: Envelope[Payload]
    body: bytes
    headers: Mapping[str, Any]
    redelivered: bool


async def decode_delivery(message: StreamMessage[Any]) -> Delivery:
    """FastStream decoder: the body through the catalog; a `ContractError` gets it parked."""
    raw: AbstractIncomingMessage = message.raw_message
    envelope = catalog.decode(message.body)
    return Delivery(envelope, message.body, message.headers or {}, bool(raw.redelivered))


def consumer_runner(
    consumer: Consumer,
    unit: Callable[[], UnitOfWork],
    *,
    held: HeldMessages | None = None,
    publisher: ConfirmedPublisher | None = None,
    deps: Mapping[str, Any] | None = None,
) -> Runner:
    """The runner of a consumer; `publisher` parks released messages that fail."""
    runner = Runner(consumer, unit, held=held, deps=deps)
    if publisher is not None:
        runner.park_copy = partial(_park_copy, publisher, consumer.name)
    return runner


def consumer_router(runner: Runner) -> RabbitRouter:
    """The router of `runner`'s consumer: one subscriber per queue it reads."""
    consumer = runner.consumer
    router = RabbitRouter(middlewares=[runtime_middleware(runner.policy)])
    queues = consumer.queue_spec()
    names = queues.queues if isinstance(queues, PartitionedQueues) else (queues.queue,)
    prefetch = 1 if consumer.ordered is not None else consumer.prefetch
    for name in names:

        async def on_message(delivery: Delivery) -> None:
            """Adapt a delivery: decoded by the runtime, applied by the runner."""
            await runner.deliver(
                delivery.envelope, delivery.body, delivery.headers, redelivered=delivery.redelivered
            )

        router.subscriber(
            RabbitQueue(name, declare=False),
            channel=Channel(prefetch_count=prefetch),
            ack_policy=AckPolicy.NACK_ON_ERROR,
            decoder=decode_delivery,
        )(on_message)
    return router


class SharedConnectionBroker(RabbitBroker):
    """A FastStream broker on the process's one AMQP connection, which it leaves open."""

    def __init__(
        self,
        connection: Callable[[], Awaitable[AbstractRobustConnection]],
        **options: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(**options)
        self._shared = connection

    async def _connect(self) -> RobustConnection:
        connection = cast("RobustConnection", await self._shared())
        if self._channel is None:
            self.config.connect(connection)
            self._channel = await self.config.channel_manager.get_channel()
        return connection

    async def stop(self, *args: Any) -> None:  # noqa: ANN401
        """Stop consuming and close the broker's channels; the connection is its owner's."""
        self._connection = None
        await super().stop(*args)


def consumer_broker(
    amqp_url: str,
    *routers: RabbitRouter,
    connection: Callable[[], Awaitable[AbstractRobustConnection]] | None = None,
) -> RabbitBroker:
    """A broker for `routers`: quiet (structlog speaks), no argument casting, bounded stop.

    With `connection` (the process's: `App.amqp.connected`), it consumes on that connection;
    else it opens its own to `amqp_url` (tests and benchmarks).
    """
    options: dict[str, Any] = {
        "logger": None,
        "apply_types": False,
        "graceful_timeout": SHUTDOWN_GRACE,
    }
    broker = (
        RabbitBroker(amqp_url, **options)
        if connection is None
        else SharedConnectionBroker(connection, url=amqp_url, **options)
    )
    for router in routers:
        broker.include_router(router)
    return broker


async def _park_copy(
    publisher: ConfirmedPublisher,
    consumer: str,
    body: bytes,
    headers: Mapping[str, Any],
    settlement: Settlement,
) -> None:
    parked = replace(settlement, routing_key=consumer, exchange=DEAD_EXCHANGE, consumer=consumer)
    properties = spec.Basic.Properties(
        headers=settled_headers(headers, "", "", parked), delivery_mode=2
    )
    await publisher.start()
    await publisher.publish(
        body,
        exchange=DEAD_EXCHANGE,
        routing_key=consumer,
        properties=properties,
        mandatory=True,
        confirm_timeout=PARK_CONFIRM_TIMEOUT,
    )
