"""The broker side of the parked-message console: send a re-drive, take parking copies away.

`AmqpParkedBroker.send` publishes a recorded message back to its consumer alone (the
record's `redrive_exchange`/`redrive_routing_key`: the consumer's queue through the default
exchange, or its partition exchange, where the `partition_slot` header routes it), marked
`x-hisho-redrive: <consumer>` as `infra.consumers.redrive` marks it, with its message id,
through the process's confirmed publisher. `take` reads a parking queue once and
acknowledges (removes) the copies the caller names, returning the others to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from aiormq import spec
from aiormq.exceptions import ChannelNotFoundEntity

from infra.consumers.parking import parked_id
from infra.consumers.runner import REDRIVE_HEADER
from infra.consumers.runtime import (
    PARKED_AT_HEADER,
    PARKED_CONSUMER_HEADER,
    PARKED_ERROR_HEADER,
    PARKED_REASON_HEADER,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

    from infra.amqp import ConfirmedPublisher
    from infra.db.parked import ParkedRecord

_PARKING_HEADERS = (PARKED_AT_HEADER, PARKED_ERROR_HEADER, PARKED_REASON_HEADER)


def redrive_properties(record: ParkedRecord) -> spec.Basic.Properties:
    """The re-driven copy's properties: its id, its headers without the parking ones, marked."""
    headers: dict[str, Any] = {
        name: value
        for name, value in (record.headers or {}).items()
        if name not in _PARKING_HEADERS
    }
    headers[REDRIVE_HEADER] = record.consumer
    headers[PARKED_CONSUMER_HEADER] = record.consumer
    return spec.Basic.Properties(
        headers=headers,
        message_id=record.message_id,
        content_type="application/json" if record.message_type else None,
        delivery_mode=2,
    )


class AmqpParkedBroker:
    """Re-drives through `publisher`; reads parking queues on a channel of `connection`."""

    def __init__(
        self,
        connection: Callable[[], Awaitable[AbstractRobustConnection]],
        publisher: ConfirmedPublisher,
        *,
        confirm_timeout: float = 5.0,
    ) -> None:
        self._connection = connection
        self._publisher = publisher
        self._confirm_timeout = confirm_timeout

    async def send(self, record: ParkedRecord) -> None:
        """Publish the record's message to its consumer, confirmed (raises if not taken)."""
        assert record.body is not None  # read with its body
        await self._publisher.start(wait=self._confirm_timeout)
        await self._publisher.publish(
            record.body,
            exchange=record.redrive_exchange,
            routing_key=record.redrive_routing_key,
            properties=redrive_properties(record),
            mandatory=True,
            confirm_timeout=self._confirm_timeout,
        )

    async def take(self, queue: str, choose: Callable[[list[str]], Awaitable[set[str]]]) -> int:
        """Remove the copies in `queue` that `choose` picks (by parked id); how many went.

        A queue that does not exist holds nothing. The others are returned, in their order.
        """
        async with asyncio.timeout(self._confirm_timeout):  # the broker may be down
            connection = await self._connection()
            channel = await connection.channel()
        try:
            copies: list[AbstractIncomingMessage] = []
            with contextlib.suppress(ChannelNotFoundEntity):
                parked = await channel.get_queue(queue, ensure=False)
                while (message := await parked.get(no_ack=False, fail=False)) is not None:
                    copies.append(message)
            if not copies:
                return 0
            ids = [parked_id(message.message_id, message.body) for message in copies]
            chosen = await choose(ids)
            taken = 0
            for message, message_id in zip(copies, ids, strict=True):
                if message_id in chosen:
                    await message.ack()
                    taken += 1
                else:
                    await message.nack(requeue=True)
            return taken
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
