"""Publishing chained events to RabbitMQ with publisher confirms and a window of them.

Up to `window` messages are unconfirmed at once; each `send()` returns a future that
resolves when the broker confirms (ack) and fails on a nack or a lost channel/connection.
Messages go out in the order `send()` is called, on one channel, so the broker routes them
in that order.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Self, cast

import aio_pika
import aiormq
from aio_pika import DeliveryMode
from aiormq import spec

from infra.partitions import PARTITION_HEADER, partition_slot

if TYPE_CHECKING:
    from types import TracebackType

    from aio_pika.abc import AbstractChannel, AbstractConnection

    from producers.relay.store import ChainedEvent

APP_ID = "hisho-relay"
CONNECT_TIMEOUT = 5.0


def amqp_headers(event: ChainedEvent) -> dict[str, Any]:
    """The headers of an event's message: position, partition key, aggregate, trace."""
    headers: dict[str, Any] = {
        "position": event.position,
        # Partitioned consumers (infra.partitions) are bound by this slot.
        PARTITION_HEADER: partition_slot(event.aggregate_id or event.id),
    }
    if event.aggregate_id is not None:
        headers["aggregate_id"] = event.aggregate_id
        headers["aggregate_type"] = event.aggregate_type
        headers["aggregate_version"] = event.aggregate_version
    if event.traceparent is not None:
        headers["traceparent"] = event.traceparent
    return headers


def amqp_properties(event: ChainedEvent) -> spec.Basic.Properties:
    """The AMQP properties of an event's message, filled from its envelope."""
    return spec.Basic.Properties(
        headers=amqp_headers(event),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=event.id,
        correlation_id=event.correlation_id,
        timestamp=event.occurred_at,
        message_type=event.type,
        app_id=APP_ID,
    )


class ConfirmingPublisher:
    """One AMQP connection and confirming channel; at most `window` unconfirmed messages."""

    def __init__(self, url: str, *, window: int) -> None:
        self._url = url
        self._slots = asyncio.Semaphore(window)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

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
        """Publish `event`, waiting for a free slot; the task ends on the broker's ack.

        Publishes go straight to aio-pika's underlying channel without waiting for each
        write to drain (`wait=False`), so the messages of a batch leave in one write; they
        are still written in call order, and each confirm is tracked by its delivery tag.
        """
        if self._channel is None:
            raise RuntimeError("publisher used outside `async with`")
        await self._slots.acquire()
        try:
            channel = cast("aiormq.Channel", await self._channel.get_underlay_channel())
            confirm = asyncio.ensure_future(
                channel.basic_publish(
                    event.body,
                    exchange=event.exchange,
                    routing_key=event.routing_key,
                    properties=amqp_properties(event),
                    mandatory=False,
                    wait=False,
                )
            )
        except BaseException:
            self._slots.release()
            raise
        confirm.add_done_callback(self._release)
        return confirm

    def _release(self, _: asyncio.Task[Any]) -> None:
        self._slots.release()  # a nack fails the task (aiormq raises DeliveryError)
