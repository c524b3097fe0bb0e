"""Per-aggregate ordered delivery: a consumer's events sharded by aggregate into partitions.

A consumer that needs its events in aggregate order opts in with `PartitionedQueues`:

    hisho.events (topic) --patterns--> hisho.<consumer>.partitioned (headers)
        --`partition_slot` header, slot % N--> hisho.<consumer>.p0 … p<N-1>

The relay hashes each event's `aggregate_id` (its id when it has no aggregate) into one of
`PARTITION_SLOTS` slots and sends it as the `partition_slot` header (`partition_slot()`
below). Each partition queue is bound to its share of the slots (slot k goes to partition
k % N), so every event of one aggregate lands in the same partition, in the order the relay
published it (position order). Each partition is a quorum queue with
`x-single-active-consumer`: any number of consumer processes may subscribe, but only one at
a time receives from a partition, so one aggregate's events are handled in order while
different partitions run in parallel. A consumer keeps that order only if it handles one
partition's messages one after another (prefetch 1, or serial handling).

Why not `x-consistent-hash`: its hash ring lives in memory and is rebuilt from the bindings
when the node boots, and the RabbitMQ documentation says a key "may route to a different
queue" after a restart (rabbitmq_consistent_hash_exchange README, "Node Restart Effects").
Events of an aggregate still queued in its old partition could then be overtaken by newer
ones routed to the new partition; our RabbitMQ-restart chaos test caught exactly that. A
headers exchange routes by durable bindings, so the slot -> partition map never moves.

Messages rejected without requeue, or redelivered more than `delivery_limit` times, are
dead-lettered to the consumer's parking queue (`hisho.<consumer>.parked`, as in
`infra.topology`). Partitions have no delayed-retry queues: a delayed retry would let later
events of the same aggregate overtake the failed one, so ordered consumers retry in
process, then park. Changing N for an existing consumer needs its partition exchange
deleted first: bindings of the old layout would otherwise stay.
"""

from __future__ import annotations

import re
import zlib
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

PARTITION_HEADER = "partition_slot"  # set by the relay on every message it publishes
PARTITION_SLOTS = 64  # also the most partitions a consumer can have
_CONSUMER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def partition_slot(partition_key: str) -> int:
    """The slot of a partition key (an aggregate id): CRC-32, stable across processes."""
    return zlib.crc32(partition_key.encode()) % PARTITION_SLOTS


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
        if not 1 <= self.partitions <= PARTITION_SLOTS:
            raise ValueError(f"partitions must be between 1 and {PARTITION_SLOTS}")
        if not self.bindings:
            raise ValueError("a partitioned consumer needs at least one routing pattern")

    @property
    def exchange(self) -> str:
        """The headers exchange splitting the events: `hisho.<consumer>.partitioned`."""
        return f"hisho.{self.consumer}.partitioned"

    @property
    def queues(self) -> tuple[str, ...]:
        """The partition queues, `hisho.<consumer>.p0` to `.p<N-1>`."""
        return tuple(f"hisho.{self.consumer}.p{i}" for i in range(self.partitions))

    @property
    def parked(self) -> str:
        """The consumer's parking queue (shared with its unpartitioned queue, if any)."""
        return f"hisho.{self.consumer}.parked"

    def partition_of(self, partition_key: str) -> int:
        """The partition an aggregate's events go to."""
        return partition_slot(partition_key) % self.partitions

    def slot_bindings(self, partition: int) -> list[dict[str, Any]]:
        """The headers-exchange binding arguments of one partition: one per slot it owns."""
        return [
            {"x-match": "all", PARTITION_HEADER: slot}
            for slot in range(partition, PARTITION_SLOTS, self.partitions)
        ]

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
    exchange = await channel.declare_exchange(spec.exchange, ExchangeType.HEADERS, durable=True)
    for pattern in spec.bindings:
        await exchange.bind(spec.source, routing_key=pattern)
    parked = await channel.declare_queue(
        spec.parked, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await parked.bind(DEAD_EXCHANGE, routing_key=spec.consumer)
    queues = []
    for partition, name in enumerate(spec.queues):
        queue = await channel.declare_queue(name, durable=True, arguments=spec.queue_arguments())
        for arguments in spec.slot_bindings(partition):
            await queue.bind(exchange, arguments=arguments)
        queues.append(queue)
    return queues
