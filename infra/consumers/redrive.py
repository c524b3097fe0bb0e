"""Re-drive: send a consumer's parked messages back to that consumer alone.

A parked message goes back to the consumer that parked it, never to the others bound to its
routing key: an unordered consumer's copy is published through the default exchange straight
to `hisho.<consumer>`; an ordered consumer's to its partition exchange
(`hisho.<consumer>.partitioned`), where the message's `partition_slot` header routes it to its
partition again. Each copy carries `x-hisho-redrive: <consumer>`, so an ordered consumer
that applies it releases the messages it held behind it. The parked copy is acknowledged
only after the broker confirmed the re-driven one: a crash in between re-drives it twice,
which the consumer's inbox turns into one effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aio_pika

from infra.consumers.runner import REDRIVE_HEADER
from infra.consumers.runtime import (
    PARKED_AT_HEADER,
    PARKED_CONSUMER_HEADER,
    PARKED_ERROR_HEADER,
    PARKED_REASON_HEADER,
)
from infra.partitions import PartitionedQueues

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

    from infra.consumers.declaration import Consumer

_PARKING_HEADERS = (PARKED_AT_HEADER, PARKED_ERROR_HEADER, PARKED_REASON_HEADER)


async def redrive(
    connection: AbstractConnection,
    consumer: Consumer,
    *,
    message_id: str | None = None,
) -> int:
    """Re-drive the consumer's parked messages (only `message_id`, if given); how many went.

    Messages that do not match stay parked, in their order.
    """
    spec = consumer.queue_spec()
    channel = await connection.channel(publisher_confirms=True)
    try:
        parked = await channel.get_queue(spec.parked, ensure=False)
        if isinstance(spec, PartitionedQueues):
            target, routing_key = await channel.get_exchange(spec.exchange, ensure=False), ""
        else:
            target, routing_key = channel.default_exchange, spec.queue
        sent, skipped = 0, []
        while True:
            message = await parked.get(no_ack=False, fail=False)
            if message is None:
                break
            if message_id is not None and message.message_id != message_id:
                skipped.append(message)
                continue
            headers = {
                name: value
                for name, value in (message.headers or {}).items()
                if name not in _PARKING_HEADERS
            }
            headers[REDRIVE_HEADER] = consumer.name
            headers[PARKED_CONSUMER_HEADER] = consumer.name
            copy = aio_pika.Message(
                message.body,
                headers=headers,
                message_id=message.message_id,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await target.publish(copy, routing_key=routing_key, mandatory=True)  # confirmed
            await message.ack()
            sent += 1
        for message in skipped:
            await message.nack(requeue=True)  # back to the parking queue's head
        return sent
    finally:
        await channel.close()
