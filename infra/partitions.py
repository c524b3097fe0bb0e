"""Per-aggregate ordered delivery: a consumer's events sharded by aggregate into partitions.

A consumer that needs its events in aggregate order opts in with `PartitionedQueues`:

    hisho.events (topic) --patterns--> hisho.<consumer>.partitioned (x-consistent-hash)
        --hash of the `partition_key` header--> hisho.<consumer>.p0 … p<N-1>

The relay sets `partition_key` to the event's `aggregate_id` (its id when it has no
aggregate), so every event of one aggregate lands in the same partition, in the order the
relay published it (position order). Each partition is a quorum queue with
`x-single-active-consumer`: any number of consumer processes may subscribe, but only one
at a time receives from a partition, so one aggregate's events are handled in order while
different partitions run in parallel. A consumer keeps that order only if it handles one
partition's messages one after another (prefetch 1, or serial handling).

Messages rejected without requeue, or redelivered more than `delivery_limit` times, are
dead-lettered to the consumer's parking queue (`hisho.<consumer>.parked`, as in
`infra.topology`). Partitions have no delayed-retry queues: a delayed retry would let later
events of the same aggregate overtake the failed one, so ordered consumers retry in
process, then park.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aio_pika import ExchangeType

from infra.topology import (
    DEAD_EXCHANGE,
    DEFAULT_DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
    EXCHANGES,
    declare_exchanges,
)

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractQueue

PARTITION_HEADER = "partition_key"  # set by the relay on every message it publishes
MAX_PARTITIONS = 256
_CONSUMER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class PartitionedQueues:
    """The partition queues of one consumer that wants per-aggregate order."""

    consumer: str
    bindings: tuple[str, ...]
    partitions: int = 4
    source: str = EVENTS_EXCHANGE
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    def __post_init__(self) -> None:
        if not _CONSUMER_NAME.match(self.consumer):
            raise ValueError(f"consumer name {self.consumer!r} must be lower snake case")
        if not 1 <= self.partitions <= MAX_PARTITIONS:
            raise ValueError(f"partitions must be between 1 and {MAX_PARTITIONS}")
        if not self.bindings:
            raise ValueError("a partitioned consumer needs at least one routing pattern")

    @property
    def exchange(self) -> str:
        """The consistent-hash exchange: `hisho.<consumer>.partitioned`."""
        return f"hisho.{self.consumer}.partitioned"

    @property
    def queues(self) -> tuple[str, ...]:
        """The partition queues, `hisho.<consumer>.p0` to `.p<N-1>`."""
        return tuple(f"hisho.{self.consumer}.p{i}" for i in range(self.partitions))

    @property
    def parked(self) -> str:
        """The consumer's parking queue (shared with its unpartitioned queue, if any)."""
        return f"hisho.{self.consumer}.parked"

    def exchange_arguments(self) -> dict[str, Any]:
        """Hash on the relay's `partition_key` header instead of the routing key."""
        return {"hash-header": PARTITION_HEADER}

    def queue_arguments(self) -> dict[str, Any]:
        """Arguments of every partition queue (subscribers declaring it must match them)."""
        return {
            "x-queue-type": "quorum",
            "x-single-active-consumer": True,
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": DEAD_EXCHANGE,
            "x-dead-letter-routing-key": self.consumer,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


async def declare_partitions(
    channel: AbstractChannel, spec: PartitionedQueues
) -> list[AbstractQueue]:
    """Declare the exchange, partitions, parking queue and bindings; safe to repeat."""
    await declare_exchanges(channel, EXCHANGES)
    exchange = await channel.declare_exchange(
        spec.exchange,
        ExchangeType.X_CONSISTENT_HASH,
        durable=True,
        arguments=spec.exchange_arguments(),
    )
    for pattern in spec.bindings:
        await exchange.bind(spec.source, routing_key=pattern)
    parked = await channel.declare_queue(
        spec.parked, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await parked.bind(DEAD_EXCHANGE, routing_key=spec.consumer)
    queues = []
    for name in spec.queues:
        queue = await channel.declare_queue(name, durable=True, arguments=spec.queue_arguments())
        await queue.bind(exchange, routing_key="1")  # equal weights: even shares of the ring
        queues.append(queue)
    return queues
