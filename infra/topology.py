"""RabbitMQ topology: exchange and queue names, and `declare_topology()`.

Exchanges (all durable):

- `hisho.commands` (direct): routing key = command type. The command processor's partition
  exchange is bound to every command type in the catalog.
- `hisho.events` (topic): routing key = `aggregate.verbed`; consumers bind patterns.
- `hisho.retry` (direct): delayed retries. Each consumer has one delay queue per delay,
  `hisho.<consumer>.retry.<ms>ms`, bound with routing key `<consumer>.<ms>ms`. A delay queue
  holds a message for its TTL, then dead-letters it through the default exchange straight
  back to `hisho.<consumer>`: only that consumer sees the retry, never the others bound to
  the original key. One queue per delay, because a queue only expires its head.
- `hisho.dead` (direct): parking. `hisho.<consumer>.parked` is bound with routing key
  `<consumer>`. A consumer queue dead-letters there what is rejected without requeue and what
  was redelivered more than its delivery limit (poison); the consumer runtime also publishes
  there directly, with the error in the headers.

Every queue is a quorum queue; dead-lettering is at-least-once, so a parked or retried
message cannot be dropped on the way. Declaring is idempotent; an existing entity declared
differently raises `TopologyConflictError` instead of a crash loop.
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aio_pika
from aio_pika import ExchangeType
from aiormq.exceptions import AMQPChannelError, ChannelPreconditionFailed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from aio_pika.abc import AbstractChannel, AbstractConnection

COMMANDS_EXCHANGE = "hisho.commands"  # direct; routing key = command type
EVENTS_EXCHANGE = "hisho.events"  # topic; routing key = aggregate.verbed
RETRY_EXCHANGE = "hisho.retry"  # direct; routing key = <consumer>.<delay>ms
DEAD_EXCHANGE = "hisho.dead"  # direct; routing key = <consumer>
COMMAND_PROCESSOR = "command_processor"  # the processor's consumer name (inbox, queues)
COMMAND_PARKED_QUEUE = "hisho.command_processor.parked"

EXCHANGES: tuple[tuple[str, ExchangeType], ...] = (
    (COMMANDS_EXCHANGE, ExchangeType.DIRECT),
    (EVENTS_EXCHANGE, ExchangeType.TOPIC),
    (RETRY_EXCHANGE, ExchangeType.DIRECT),
    (DEAD_EXCHANGE, ExchangeType.DIRECT),
)
DEFAULT_RETRY_DELAYS_MS = (1_000, 10_000, 60_000)
DEFAULT_DELIVERY_LIMIT = 20

_CONSUMER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class TopologyError(Exception):
    """RabbitMQ refused to declare an exchange, queue or binding."""

    def __init__(self, kind: str, name: str, reason: str) -> None:
        self.kind = kind
        self.name = name
        self.reason = reason
        super().__init__(f"{kind} {name!r}: {reason}")


class TopologyConflictError(TopologyError):
    """An entity already exists with another type or other arguments (PRECONDITION_FAILED)."""


@dataclass(frozen=True)
class ConsumerQueues:
    """The queues one consumer owns: its main queue, one delay queue per delay, a parking queue."""

    consumer: str
    source: str = EVENTS_EXCHANGE
    bindings: tuple[str, ...] = ()
    retry_delays_ms: tuple[int, ...] = DEFAULT_RETRY_DELAYS_MS
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    single_active: bool = False

    def __post_init__(self) -> None:
        if not _CONSUMER_NAME.match(self.consumer):
            raise ValueError(f"consumer name {self.consumer!r} must be lower snake case")
        if any(delay <= 0 for delay in self.retry_delays_ms):
            raise ValueError("retry delays must be positive milliseconds")
        if len(set(self.retry_delays_ms)) != len(self.retry_delays_ms):
            raise ValueError("retry delays must be distinct")

    @property
    def queue(self) -> str:
        """The queue the consumer reads: `hisho.<consumer>`."""
        return f"hisho.{self.consumer}"

    @property
    def parked(self) -> str:
        """The parking queue: `hisho.<consumer>.parked`."""
        return f"{self.queue}.parked"

    @property
    def parking_routing_key(self) -> str:
        """Publish to `hisho.dead` with this key to park a message."""
        return self.consumer

    def retry_queue(self, delay_ms: int) -> str:
        """The delay queue for one delay."""
        return f"{self.queue}.retry.{delay_ms}ms"

    def retry_routing_key(self, delay_ms: int) -> str:
        """Publish to `hisho.retry` with this key to retry after `delay_ms`."""
        return f"{self.consumer}.{delay_ms}ms"

    def next_retry(self, retries_done: int) -> str | None:
        """The retry routing key after `retries_done` delayed retries, or None: park it."""
        if 0 <= retries_done < len(self.retry_delays_ms):
            return self.retry_routing_key(self.retry_delays_ms[retries_done])
        return None

    def queue_arguments(self) -> dict[str, Any]:
        """Arguments of the main queue: quorum, poison limit, dead-lettered to parking."""
        arguments: dict[str, Any] = {
            **_dead_lettered(DEAD_EXCHANGE, self.parking_routing_key),
            "x-delivery-limit": self.delivery_limit,
        }
        if self.single_active:
            arguments["x-single-active-consumer"] = True
        return arguments

    def retry_arguments(self, delay_ms: int) -> dict[str, Any]:
        """Arguments of a delay queue: hold for `delay_ms`, then back to the main queue."""
        return {**_dead_lettered("", self.queue), "x-message-ttl": delay_ms}

    async def declare(self, channel: AbstractChannel) -> None:
        """Declare and bind its queues (the exchanges must exist)."""
        await declare_queues(channel, self)


class QueueSpec(Protocol):
    """What one consumer's queues declare themselves with (`ConsumerQueues`, partitions)."""

    @property
    def consumer(self) -> str:
        """The consumer's name."""
        ...

    async def declare(self, channel: AbstractChannel) -> None:
        """Declare the consumer's queues and bindings."""
        ...


async def declare_topology(connection: AbstractConnection, consumers: Iterable[QueueSpec]) -> None:
    """Declare hisho's exchanges and every given consumer's queues; safe to repeat.

    `hisho.bootstrap` passes the queues of every registered consumer: one call declares all.
    """
    async with _one_shot_channel(connection) as channel:
        await declare_exchanges(channel)
        for spec in consumers:
            await spec.declare(channel)


async def declare_consumer_queues(
    channel: AbstractChannel,
    consumer: str,
    bindings: Iterable[str],
    *,
    source: str = EVENTS_EXCHANGE,
    retry_delays_ms: tuple[int, ...] = DEFAULT_RETRY_DELAYS_MS,
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
    single_active: bool = False,
) -> ConsumerQueues:
    """Declare a consumer's queue, delay queues and parking queue; return their names."""
    spec = ConsumerQueues(
        consumer=consumer,
        source=source,
        bindings=tuple(bindings),
        retry_delays_ms=retry_delays_ms,
        delivery_limit=delivery_limit,
        single_active=single_active,
    )
    await declare_exchanges(channel)
    await declare_queues(channel, spec)
    return spec


async def declare_exchanges(
    channel: AbstractChannel, exchanges: Iterable[tuple[str, ExchangeType]] = EXCHANGES
) -> None:
    """Declare durable exchanges (hisho's four by default)."""
    for name, kind in exchanges:
        async with _declaring("exchange", name):
            await channel.declare_exchange(name, kind, durable=True)


async def declare_queues(channel: AbstractChannel, spec: ConsumerQueues) -> None:
    """Declare and bind every queue `spec` names (its exchanges must exist)."""
    await _queue(channel, spec.parked, {}, [(DEAD_EXCHANGE, spec.parking_routing_key)])
    for delay in spec.retry_delays_ms:
        await _queue(
            channel,
            spec.retry_queue(delay),
            spec.retry_arguments(delay),
            [(RETRY_EXCHANGE, spec.retry_routing_key(delay))],
        )
    main_bindings = [(spec.source, key) for key in spec.bindings]
    await _queue(channel, spec.queue, spec.queue_arguments(), main_bindings)


async def _queue(
    channel: AbstractChannel,
    name: str,
    arguments: dict[str, Any],
    bindings: list[tuple[str, str]],
) -> None:
    async with _declaring("queue", name):
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum", **arguments}
        )
    for exchange, key in bindings:
        async with _declaring("binding", f"{exchange} -> {name} ({key})"):
            await queue.bind(exchange, key)


def _dead_lettered(exchange: str, routing_key: str) -> dict[str, Any]:
    # At-least-once dead-lettering (quorum queues) requires the reject-publish overflow mode.
    return {
        "x-dead-letter-exchange": exchange,
        "x-dead-letter-routing-key": routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


@asynccontextmanager
async def _declaring(kind: str, name: str) -> AsyncIterator[None]:
    try:
        yield
    except ChannelPreconditionFailed as exc:
        raise TopologyConflictError(kind, name, _reason(exc)) from exc
    except AMQPChannelError as exc:
        raise TopologyError(kind, name, _reason(exc)) from exc


def _reason(exc: Exception) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__


@asynccontextmanager
async def _one_shot_channel(connection: AbstractConnection) -> AsyncIterator[AbstractChannel]:
    # A plain channel even on a robust connection: a robust one would reopen after a
    # PRECONDITION_FAILED close and replay its declarations, which is the crash loop we avoid.
    channel = aio_pika.Channel(connection)
    await channel.initialize()
    try:
        yield channel
    finally:
        if not channel.is_closed:
            await channel.close()
