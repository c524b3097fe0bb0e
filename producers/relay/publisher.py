"""Chained events as AMQP messages, sent on a `ConfirmStream` of the process's publisher.

The stream (`infra.amqp`) keeps up to `relay_confirm_window` messages unconfirmed; each
`publish()` returns a future that resolves when the broker confirms (ack) and fails on a
nack or a lost channel/connection. Messages go out in the order `publish()` is called, on
one channel, so the broker routes them in that order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aio_pika import DeliveryMode
from aiormq import spec

from infra.partitions import PARTITION_HEADER, partition_slot

if TYPE_CHECKING:
    import asyncio

    from infra.amqp import ConfirmStream
    from producers.relay.store import ChainedEvent

APP_ID = "hisho-relay"
PROJECT_HEADER = "x-hisho-project"  # the payload's project, for subscribers' bindings
KIND_HEADER = "x-hisho-kind"  # event | command


def amqp_headers(event: ChainedEvent) -> dict[str, Any]:
    """The headers of an event's message: position, slot, kind, project, aggregate, trace."""
    headers: dict[str, Any] = {
        "position": event.position,
        # Partitioned consumers (infra.partitions) are bound by this slot.
        PARTITION_HEADER: partition_slot(event.partition_key),
        KIND_HEADER: event.kind,
    }
    if event.project_id is not None:
        headers[PROJECT_HEADER] = event.project_id
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


async def publish(stream: ConfirmStream, event: ChainedEvent) -> asyncio.Future[Any]:
    """Send `event` on the stream (in call order); the future ends on the broker's ack."""
    return await stream.send(
        event.body,
        exchange=event.exchange,
        routing_key=event.routing_key,
        properties=amqp_properties(event),
    )
