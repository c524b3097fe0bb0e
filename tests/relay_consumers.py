"""The consumer side of the relay tests: record every delivery, then check the guarantees."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.partitions import PartitionedQueues, declare_partitions
from infra.topology import EVENTS_EXCHANGE

if TYPE_CHECKING:
    from collections.abc import Mapping

    import asyncpg
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue


@dataclass(frozen=True)
class Delivery:
    """One message as a consumer received it."""

    queue: str
    message_id: str
    position: int
    aggregate_id: str | None
    aggregate_version: int | None
    redelivered: bool


class Collector:
    """Consumes queues and records deliveries in arrival order (acked after recording)."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._queues: list[AbstractQueue] = []

    async def consume(self, queue: AbstractQueue) -> None:
        """Start consuming `queue` (on a robust channel the consumer survives reconnects)."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            headers = message.headers
            version = headers.get("aggregate_version")
            self.deliveries.append(  # before any await: arrival order is kept
                Delivery(
                    queue=queue.name,
                    message_id=str(message.message_id),
                    position=int(str(headers["position"])),
                    aggregate_id=str(headers["aggregate_id"])
                    if "aggregate_id" in headers
                    else None,
                    aggregate_version=None if version is None else int(str(version)),
                    redelivered=bool(message.redelivered),
                )
            )
            await message.ack()

        await queue.consume(on_message)
        self._queues.append(queue)

    def ids(self) -> set[str]:
        """Distinct message ids received."""
        return {d.message_id for d in self.deliveries}


async def plain_queue(channel: AbstractChannel, routing_key: str) -> AbstractQueue:
    """An exclusive, auto-deleted classic queue bound to `routing_key` on hisho.events."""
    queue = await channel.declare_queue(f"relay-test-{uuid.uuid4().hex[:12]}", exclusive=True)
    await queue.bind(EVENTS_EXCHANGE, routing_key)
    return queue


async def partitioned(
    channel: AbstractChannel, routing_key: str, partitions: int = 3
) -> tuple[PartitionedQueues, list[AbstractQueue]]:
    """A partitioned consumer (infra.partitions) for `routing_key`, with a unique name."""
    spec = PartitionedQueues(
        consumer=f"relay_test_{uuid.uuid4().hex[:10]}",
        bindings=(routing_key,),
        partitions=partitions,
    )
    return spec, await declare_partitions(channel, spec)


async def remove_partitioned(channel: AbstractChannel, spec: PartitionedQueues) -> None:
    """Delete what `partitioned` declared (quorum queues are not auto-deleted)."""
    for name in (*spec.queues, spec.parked):
        await channel.queue_delete(name)
    await channel.exchange_delete(spec.exchange)


async def log_positions(connection: asyncpg.Connection) -> dict[str, int]:
    """Message id -> position for every positioned outbox row."""
    rows = await connection.fetch("SELECT id, position FROM outbox WHERE position IS NOT NULL")
    return {str(row["id"]): row["position"] for row in rows}


def assert_complete_without_gaps(deliveries: list[Delivery], log: Mapping[str, int]) -> None:
    """Every logged event arrived; positions 1..N; a duplicate is the same id at the same spot."""
    assert sorted(log.values()) == list(range(1, len(log) + 1)), "positions have a gap"
    seen_at: dict[int, str] = {}
    for delivery in deliveries:
        assert log.get(delivery.message_id) == delivery.position, f"unknown or moved {delivery}"
        assert seen_at.setdefault(delivery.position, delivery.message_id) == delivery.message_id
    missing = set(log) - {d.message_id for d in deliveries}
    assert not missing, f"{len(missing)} committed events never arrived"


def assert_aggregate_order(deliveries: list[Delivery]) -> None:
    """Per queue and aggregate, each new event is the next version; one queue per aggregate."""
    queue_of: dict[str, str] = {}
    last_version: dict[tuple[str, str], int] = defaultdict(int)
    seen: set[str] = set()
    for d in deliveries:
        assert d.aggregate_id is not None
        assert d.aggregate_version is not None
        assert queue_of.setdefault(d.aggregate_id, d.queue) == d.queue, "aggregate split"
        if d.message_id in seen:
            continue  # a redelivery of an event already received
        seen.add(d.message_id)
        key = (d.queue, d.aggregate_id)
        assert d.aggregate_version == last_version[key] + 1, (
            f"aggregate {d.aggregate_id}: version {d.aggregate_version} "
            f"arrived after {last_version[key]}"
        )
        last_version[key] = d.aggregate_version
