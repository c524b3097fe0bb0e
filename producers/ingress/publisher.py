"""Publish commands to `hisho.commands` with publisher confirms; fail fast without them.

The adapter of the `CommandPublisher` port on the process's confirmed publisher
(`infra.amqp`). A `202` means the broker confirmed the message (persistent, routed to at
least one queue: `mandatory` with returns raised). A failure is one of two kinds, and the
ingress answers them differently:

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

from typing import TYPE_CHECKING

import aio_pika
import aiormq

from infra.amqp import ConfirmUnknownError, NotPublishedError
from infra.topology import COMMANDS_EXCHANGE
from producers.ingress.ports import BrokerUnavailableError, PublishOutcomeUnknownError

if TYPE_CHECKING:
    from infra.amqp import ConfirmedPublisher
    from producers.ingress.ports import OutgoingCommand


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
    """Publishes commands on the process's confirmed publisher, one confirm per command."""

    def __init__(
        self,
        publisher: ConfirmedPublisher,
        *,
        confirm_timeout: float,
        exchange: str = COMMANDS_EXCHANGE,
    ) -> None:
        self._publisher = publisher
        self._confirm_timeout = confirm_timeout
        self._exchange = exchange

    @property
    def ready(self) -> bool:
        """Whether a publish can be attempted now (connected, channel open)."""
        return self._publisher.ready

    async def start(self, *, wait: float = 0.0) -> None:
        """Open the channel once the exchange exists; wait up to `wait` seconds for it."""
        await self._publisher.start(wait=wait, exchanges=(self._exchange,))

    async def publish(self, command: OutgoingCommand) -> None:
        """Publish and wait for the broker's confirm; raise one of the two errors above."""
        try:
            await self._publisher.publish(
                command.body,
                exchange=self._exchange,
                routing_key=command.routing_key,
                properties=amqp_properties(command),
                mandatory=True,
                confirm_timeout=self._confirm_timeout,
            )
        except NotPublishedError as exc:
            raise BrokerUnavailableError(str(exc)) from exc
        except ConfirmUnknownError as exc:
            raise PublishOutcomeUnknownError(str(exc)) from exc
