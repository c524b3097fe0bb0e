"""A steady outbox writer for chaos tests: keeps writing through database restarts."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aio_pika
import asyncpg

from hisho.consumers import declare_all
from tests.relay_consumers import (
    Collector,
    assert_aggregate_order,
    assert_complete_without_gaps,
    log_positions,
    partitioned,
    remove_partitioned,
)
from tests.relay_harness import (
    Probe,
    RelayProcess,
    eventually,
    insert_probes,
    log_state,
    private_database,
    unique_routing_key,
    wait_for_leader,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from infra.settings import Settings

RECONNECT_PAUSE = 0.2
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a session cut in the middle of an operation
)


class LoadWriter:
    """Writes about `rate` events/s from `writers` connections, each commit one version of
    `per_commit` aggregates. After a failed commit (outcome unknown) a writer moves on to
    fresh aggregates, so every aggregate's committed versions stay 1, 2, 3… without holes.
    """

    def __init__(
        self,
        dsn: str,
        routing_key: str,
        *,
        rate: float = 500,
        writers: int = 4,
        per_commit: int = 5,
    ) -> None:
        self._dsn = dsn
        self._routing_key = routing_key
        self._per_commit = per_commit
        self._writers = writers
        self._interval = per_commit * writers / rate
        self.acknowledged: set[uuid.UUID] = set()
        self.failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Write until `stop` is set."""
        await asyncio.gather(*(self._writer(stop) for _ in range(self._writers)))

    def _fresh(self) -> dict[uuid.UUID, int]:
        return {uuid.uuid4(): 0 for _ in range(self._per_commit)}

    async def _writer(self, stop: asyncio.Event) -> None:
        versions = self._fresh()
        connection: asyncpg.Connection | None = None
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                if connection is None or connection.is_closed():
                    connection = await asyncpg.connect(self._dsn, timeout=2)
                rows = [Probe(uuid.uuid4(), agg, v + 1) for agg, v in versions.items()]
                await insert_probes(connection, self._routing_key, rows)
            except _CONNECTION_ERRORS:
                self.failures += 1
                versions = self._fresh()  # the last commit may or may not have happened
                if connection is not None:
                    connection.terminate()
                    connection = None
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            self.acknowledged.update(row.id for row in rows)
            versions = {row.aggregate_id: row.aggregate_version for row in rows}
            next_at += self._interval
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if connection is not None:
            await connection.close()


@dataclass
class Chaos:
    """What a disruption can act on while the load runs."""

    settings: Settings  # the private database on the servers under test
    relays: list[RelayProcess]
    writer: LoadWriter
    tmp_path: Path
    _db: asyncpg.Connection | None = None
    # Filled in by `run_under_load` at the end: the log (id -> position) and what arrived.
    log: dict[str, int] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)

    async def db(self) -> asyncpg.Connection:
        """A connection to the log's database (a new one after the old one broke)."""
        if self._db is None or self._db.is_closed():
            self._db = await asyncpg.connect(self.settings.database_dsn, timeout=5)
        return self._db

    async def close(self) -> None:
        """Close the connection `db()` opened."""
        if self._db is not None:
            self._db.terminate()

    async def written(self, more: int) -> None:
        """Wait until the writer has `more` further commits acknowledged."""
        target = len(self.writer.acknowledged) + more

        async def reached() -> bool:
            return len(self.writer.acknowledged) >= target

        await eventually(reached, timeout=60, what=f"{more} more events written")

    async def pending(self) -> set[str]:
        """Ids of the committed rows not yet marked published (on a new connection if the
        old one died with its server)."""
        query = "SELECT id FROM outbox WHERE published_at IS NULL"
        try:
            rows = await (await self.db()).fetch(query)
        except _CONNECTION_ERRORS:
            await self.close()
            self._db = None
            rows = await (await self.db()).fetch(query)
        return {str(row["id"]) for row in rows}

    def acknowledged_ids(self) -> set[str]:
        """Ids of the rows the writer has seen committed so far."""
        return {str(event_id) for event_id in self.writer.acknowledged}


async def run_under_load(
    settings: Settings,
    tmp_path: Path,
    disrupt: Callable[[Chaos], Awaitable[None]],
    *,
    warm_up: int = 1500,
    cool_down: int = 1500,
) -> Chaos:
    """Two relays, a partitioned consumer and steady writes around `disrupt`; then check
    that every committed event arrived, positions have no gap, duplicates keep their id and
    position, and each aggregate arrived in version order.
    """
    amqp = await aio_pika.connect_robust(f"{settings.amqp}?reconnect_interval=0.5")
    channel = await amqp.channel()
    await channel.set_qos(prefetch_count=50)
    key, collector = unique_routing_key(), Collector()
    await declare_all(amqp)
    spec, queues = await partitioned(channel, key, partitions=3)
    try:
        for queue in queues:
            await collector.consume(queue)
        async with private_database(settings) as private:
            chaos = await _load_and_disrupt(
                private, tmp_path, key, disrupt, warm_up=warm_up, cool_down=cool_down
            )
            await _all_delivered(chaos, collector)
            log = await log_positions(await chaos.db())
            await chaos.close()
        chaos.log, chaos.delivered = log, collector.ids()
        assert chaos.writer.acknowledged <= {uuid.UUID(i) for i in log}
        assert_complete_without_gaps(collector.deliveries, log)
        assert_aggregate_order(collector.deliveries)
        return chaos
    finally:
        await remove_partitioned(channel, spec)
        await amqp.close()


async def _load_and_disrupt(
    settings: Settings,
    tmp_path: Path,
    key: str,
    disrupt: Callable[[Chaos], Awaitable[None]],
    *,
    warm_up: int,
    cool_down: int,
) -> Chaos:
    relays = [RelayProcess(settings, tmp_path / f"relay-{i}.log") for i in range(2)]
    writer, stop = LoadWriter(settings.database_dsn, key), asyncio.Event()
    chaos = Chaos(settings, relays, writer, tmp_path)
    try:
        await wait_for_leader(await chaos.db(), [r.pid for r in relays])
        writing = asyncio.create_task(writer.run(stop))
        await chaos.written(warm_up)
        await disrupt(chaos)
        await chaos.written(cool_down)
        stop.set()
        await asyncio.wait_for(writing, 30)
    except BaseException:
        for relay in relays:
            relay.stop()
        raise
    return chaos


async def _all_delivered(chaos: Chaos, collector: Collector) -> None:
    async def done() -> bool:
        try:
            rows, _, published, _ = await log_state(await chaos.db())
        except _CONNECTION_ERRORS:
            return False  # the server is still coming back
        return rows == published and len(collector.ids()) == rows

    try:
        await eventually(done, timeout=90, what="every committed event to be delivered")
    finally:
        for relay in chaos.relays:
            relay.stop()
