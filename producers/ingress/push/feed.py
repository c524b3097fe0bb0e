"""The process's own queue of notifications: every ingress process sees every one.

Each ingress process declares an exclusive, auto-deleted queue `hisho.push.<host>.<pid>.<n>`
bound to `hisho.events` with `notification.requested`, on the process's one broker
connection (`App.amqp`), and hands each in-app notification to its `PushHub`. The queue
lives as long as the connection: it is classic (a quorum queue cannot be exclusive) and
holds nothing worth keeping, since the log is the record and clients replay from it.

When the connection is lost and restored, messages published in between never reached the
new queue: every subscription is then closed (`feed-lost`) and its client, reconnecting
with its last position, gets them from the log. Deliveries are acknowledged after the hub
took them, at most `PREFETCH` unacknowledged: a stalled process does not buffer unboundedly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from events import ContractError, catalog
from infra.amqp import FAILURES
from infra.topology import EVENTS_EXCHANGE
from producers.ingress.push.hub import FEED_LOST
from producers.ingress.push.replay import pushed

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

    from infra.amqp import AmqpConnection
    from producers.ingress.push.hub import PushHub

log = structlog.get_logger("hisho.ingress.push")

ROUTING_KEY = catalog.entry("NotificationRequested").routing_key
PREFETCH = 500


def queue_name() -> str:
    """The push queue of this process: host, pid and a random part (several per host may run)."""
    return f"hisho.push.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


class PushFeed:
    """Consumes the process's push queue into its hub, in the background."""

    def __init__(self, amqp: AmqpConnection, hub: PushHub) -> None:
        self._amqp = amqp
        self._hub = hub
        self._task: asyncio.Task[None] | None = None
        self._channel: AbstractChannel | None = None
        self.queue = queue_name()
        self.consuming = asyncio.Event()  # set once the queue is bound and consumed

    def start(self) -> None:
        """Declare, bind and consume in the background (the broker may be down for now)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        connection = await self._amqp.connected()
        while True:
            try:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=PREFETCH)
                queue = await channel.declare_queue(self.queue, exclusive=True, auto_delete=True)
                await queue.bind(EVENTS_EXCHANGE, ROUTING_KEY)
                await queue.consume(self._on_message)
            except FAILURES as exc:
                log.warning("push feed not consuming yet", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            self._channel = channel
            connection.reconnect_callbacks.add(self._on_reconnect)
            self.consuming.set()
            return

    def _on_reconnect(self, *_: Any) -> None:  # noqa: ANN401  (aio-pika's callback arguments)
        log.warning("push feed reconnected: subscriptions closed, clients replay from the log")
        self._hub.close_all(FEED_LOST)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = catalog.decode(message.body)
        except ContractError as exc:
            log.warning("push feed skipped an undecodable message", error=str(exc))
        else:
            if envelope.position is None and isinstance(message.headers.get("position"), int):
                envelope = envelope.model_copy(update={"position": message.headers["position"]})
            item = pushed(envelope)
            if item is not None:
                self._hub.publish(item)
        await message.ack()

    async def close(self) -> None:
        """Stop consuming and close the channel (the queue goes with it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *FAILURES):
                await self._task
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(*FAILURES):
                await channel.close()
