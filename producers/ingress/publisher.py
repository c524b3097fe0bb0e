"""Publish commands to `hisho.commands` with publisher confirms; fail fast without them.

A `202` means the broker confirmed the message (persistent, routed to at least one queue:
`mandatory` with returns raised). A failure is one of two kinds, and the ingress answers
them differently:

- `BrokerUnavailableError`: the broker certainly did not take the message — not connected
  or the channel closed before the publish began, a nack, a returned (unroutable) message.
  The ingress answers `503`.
- `PublishOutcomeUnknownError`: the message may have been taken — no confirm within
  `confirm_timeout`, or the channel or connection lost while the publish was under way. A
  late confirm is still a confirm: the ingress answers `504` and the client retries with
  the command's idempotency key (the same command id, which the processor applies once).

The robust connection reconnects in the background; while it is down `publish` fails at
once instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
import structlog
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError

from infra.topology import COMMANDS_EXCHANGE

if TYPE_CHECKING:
    from datetime import datetime

    from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

log = structlog.get_logger("hisho.ingress.publisher")

_FAILURES = (AMQPError, ChannelInvalidStateError, ConnectionError, OSError, TimeoutError)


class BrokerUnavailableError(Exception):
    """The broker certainly did not take a message: it was not accepted."""


class PublishOutcomeUnknownError(Exception):
    """A message was (or may have been) sent, but no confirm came: it may have been accepted."""


@dataclass(frozen=True)
class OutgoingCommand:
    """One command message as it goes on the wire."""

    routing_key: str
    body: bytes
    message_id: str
    type: str
    correlation_id: str
    timestamp: datetime
    headers: dict[str, Any] = field(default_factory=dict)


def amqp_properties(command: OutgoingCommand) -> aiormq.spec.Basic.Properties:
    """The AMQP properties of a command: what `aio_pika.Message` sends, byte for byte."""
    return aiormq.spec.Basic.Properties(
        content_type="application/json",
        correlation_id=command.correlation_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=command.headers,
        message_id=command.message_id,
        message_type=command.type,
        priority=0,  # aio_pika.Message's default, sent explicitly
        timestamp=command.timestamp,
    )


class AmqpCommandPublisher:
    """Publishes to `hisho.commands` on one confirm-mode channel of a robust connection."""

    def __init__(
        self,
        url: str,
        *,
        confirm_timeout: float,
        exchange: str = COMMANDS_EXCHANGE,
        reconnect_interval: float = 1.0,
    ) -> None:
        self._url = url
        self._confirm_timeout = confirm_timeout
        self._exchange_name = exchange
        self._reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._connector: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Whether a publish can be attempted now (connected, channel open)."""
        return (
            self._exchange is not None
            and self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def start(self, *, wait: float = 0.0) -> None:
        """Connect in the background; wait up to `wait` seconds for the first connection."""
        if self._connector is None:
            self._connector = asyncio.create_task(self._connect_until_done())
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._connector), wait)

    async def _connect_until_done(self) -> None:
        while True:
            try:
                await self._connect()
            except _FAILURES as exc:
                log.warning("broker not reachable yet", error=str(exc) or type(exc).__name__)
                await self._drop_connection()
                await asyncio.sleep(self._reconnect_interval)
            else:
                return

    async def _connect(self) -> None:
        async with asyncio.timeout(max(self._confirm_timeout, 5.0)):
            connection = await aio_pika.connect_robust(
                self._url, reconnect_interval=self._reconnect_interval, timeout=5
            )
            self._connection = connection
            async with connection.channel(publisher_confirms=False) as probe:
                await probe.get_exchange(self._exchange_name, ensure=True)  # exists?
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._channel = channel
            self._exchange = await channel.get_exchange(self._exchange_name, ensure=False)

    async def _drop_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._exchange = None
        if connection is not None:
            with contextlib.suppress(*_FAILURES):
                await connection.close()

    async def publish(self, command: OutgoingCommand) -> None:
        """Publish and wait for the broker's confirm; raise one of the two errors above."""
        channel = self._channel
        if channel is None or not self.ready:
            raise BrokerUnavailableError("not connected to the broker")
        # Straight onto the channel's aiormq channel: aio-pika's Message and Exchange layers
        # cost ~60 us of CPU per command and add nothing here.
        properties = amqp_properties(command)
        try:
            async with asyncio.timeout(self._confirm_timeout):
                underlay = await channel.get_underlay_channel()
                await underlay.basic_publish(
                    command.body,
                    exchange=self._exchange_name,
                    routing_key=command.routing_key,
                    properties=properties,
                    mandatory=True,
                )
        except DeliveryError as exc:  # a nack, or returned unroutable (PublishError)
            raise BrokerUnavailableError(_describe(exc)) from exc
        except ChannelInvalidStateError as exc:  # refused on a closed channel, before sending
            raise BrokerUnavailableError(_describe(exc)) from exc
        except _FAILURES as exc:  # a timeout, or a channel or connection lost on the way
            raise PublishOutcomeUnknownError(_describe(exc)) from exc

    async def close(self) -> None:
        """Stop connecting and close the connection."""
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_FAILURES):
                await self._connector
            self._connector = None
        await self._drop_connection()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
