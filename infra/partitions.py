"""Per-aggregate ordered delivery: a consumer's events sharded by aggregate into partitions.

A consumer that needs its events in aggregate order opts in with `PartitionedQueues`:

    hisho.events (topic) --patterns--> hisho.<consumer>.partitioned (headers)
        --`partition_slot` header, slot % N--> hisho.<consumer>.p0 … p<N-1>

The ingress and the relay hash each message's partition key (an event's `aggregate_id`, a
command's target id: `events.catalog.partition_key`) into one of `PARTITION_SLOTS` slots and
send it as the `partition_slot` header (`envelope_slot()` below). Each partition queue is
bound to its share of the slots (slot k goes to partition k % N), so every message of one key
lands in the same partition, in the order it was published (accepted, or position order).
Each partition is a quorum queue with `x-single-active-consumer`: any number of consumer
processes may subscribe, but only one at a time receives from a partition, so one key's
messages are handled in order while different partitions run in parallel (the framework
reads each partition with prefetch 1: `infra.consumers.router`).

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

from events.catalog import partition_key
from infra.topology import (
    DEAD_EXCHANGE,
    DEFAULT_DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
    EXCHANGES,
    declare_exchanges,
)

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractQueue

    from events import Envelope, Message

PARTITION_HEADER = "partition_slot"  # set by the relay on every message it publishes
PARTITION_SLOTS = 64  # also the most partitions a consumer can have
_CONSUMER_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def partition_slot(partition_key: str) -> int:
    """The slot of a partition key (an aggregate id): CRC-32, stable across processes."""
    return zlib.crc32(partition_key.encode()) % PARTITION_SLOTS


def envelope_slot(envelope: Envelope[Message]) -> int:
    """The `partition_slot` header of a message: its aggregate's (event) or target's (command)."""
    return partition_slot(partition_key(envelope))


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
    def unslotted(self) -> str:
        """The fanout exchange taking messages with no slot header to partition 0."""
        return f"{self.exchange}.unslotted"

    @property
    def queues(self) -> tuple[str, ...]:
        """The partition queues, `hisho.<consumer>.p0` to `.p<N-1>`."""
        return tuple(f"hisho.{self.consumer}.p{i}" for i in range(self.partitions))

    @property
    def parked(self) -> str:
        """The consumer's parking queue (shared with its unpartitioned queue, if any)."""
        return f"hisho.{self.consumer}.parked"

    @property
    def parking_routing_key(self) -> str:
        """Publish to `hisho.dead` with this key to park a message."""
        return self.consumer

    @property
    def retry_delays_ms(self) -> tuple[int, ...]:
        """None: a delayed retry would let later messages of the key overtake the failed one."""
        return ()

    def next_retry(self, retries_done: int) -> str | None:  # noqa: ARG002
        """Never a delay queue: an ordered consumer retries in process, then parks."""
        return None

    def retry_routing_key(self, delay_ms: int) -> str:
        """No delay queues (see `retry_delays_ms`)."""
        raise ValueError(f"{self.consumer} is ordered: it has no {delay_ms} ms delay queue")

    async def declare(self, channel: AbstractChannel) -> None:
        """Declare its exchange, partitions, parking queue and bindings."""
        await declare_partitions(channel, self)

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
    """Declare the exchange, partitions, parking queue and bindings; safe to repeat.

    A message without a `partition_slot` header (a publisher that does not know about
    partitions) is not dropped: the partition exchange's alternate exchange sends it to the
    first partition (ordered with the others there, not necessarily with its key's).
    """
    await declare_exchanges(channel, EXCHANGES)
    fallback = await channel.declare_exchange(spec.unslotted, ExchangeType.FANOUT, durable=True)
    exchange = await channel.declare_exchange(
        spec.exchange,
        ExchangeType.HEADERS,
        durable=True,
        arguments={"alternate-exchange": spec.unslotted},
    )
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
        if partition == 0:
            await queue.bind(fallback)
        queues.append(queue)
    return queues
