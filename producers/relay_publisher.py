"""Publishing chained events to RabbitMQ with publisher confirms and a window of them.

Up to `window` messages are unconfirmed at once; each `send()` returns a future that
resolves when the broker confirms (ack) and fails on a nack or a lost channel/connection.
Messages go out in the order `send()` is called, on one channel, so the broker routes them
in that order.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Self

import aio_pika
from aio_pika import DeliveryMode

from infra.partitions import PARTITION_HEADER

if TYPE_CHECKING:
    from types import TracebackType

    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

    from producers.relay_store import ChainedEvent

APP_ID = "hisho-relay"
CONNECT_TIMEOUT = 5.0


def amqp_message(event: ChainedEvent) -> aio_pika.Message:
    """The AMQP message of an event: canonical body, envelope fields as properties/headers."""
    headers: dict[str, Any] = {
        "position": event.position,
        # The consistent-hash partitions (infra.partitions) shard on this header.
        PARTITION_HEADER: str(event.aggregate_id or event.id),
    }
    if event.aggregate_id is not None:
        headers["aggregate_id"] = str(event.aggregate_id)
        headers["aggregate_type"] = event.aggregate_type
        headers["aggregate_version"] = event.aggregate_version
    if event.traceparent is not None:
        headers["traceparent"] = event.traceparent
    return aio_pika.Message(
        event.body,
        headers=headers,
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=str(event.id),
        correlation_id=str(event.correlation_id),
        timestamp=event.occurred_at,
        type=event.type,
        app_id=APP_ID,
    )


class ConfirmingPublisher:
    """One AMQP connection and confirming channel; at most `window` unconfirmed messages."""

    def __init__(self, url: str, *, window: int) -> None:
        self._url = url
        self._slots = asyncio.Semaphore(window)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}

    async def __aenter__(self) -> Self:
        self._connection = await aio_pika.connect(self._url, timeout=CONNECT_TIMEOUT)
        self._channel = await self._connection.channel(publisher_confirms=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def send(self, event: ChainedEvent) -> asyncio.Task[Any]:
        """Publish `event`, waiting for a free slot; the future resolves on the broker's ack."""
        await self._slots.acquire()
        try:
            exchange = await self._exchange(event.exchange)
            confirm = asyncio.ensure_future(
                exchange.publish(amqp_message(event), event.routing_key, mandatory=False)
            )
        except BaseException:
            self._slots.release()
            raise
        confirm.add_done_callback(self._release)
        return confirm

    def _release(self, _: asyncio.Task[Any]) -> None:
        self._slots.release()

    async def _exchange(self, name: str) -> AbstractExchange:
        exchange = self._exchanges.get(name)
        if exchange is None:
            if self._channel is None:
                raise RuntimeError("publisher used outside `async with`")
            exchange = await self._channel.get_exchange(name, ensure=False)
            self._exchanges[name] = exchange
        return exchange
