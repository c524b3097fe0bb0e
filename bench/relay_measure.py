"""The relay benchmark's measurements (bench/relay.py runs them and prints the table)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

import aio_pika
import asyncpg

from hisho.bootstrap import run_on_app
from infra.eventlog.chain import canonical_bytes
from infra.eventlog.notify import NOTIFY_CHANNEL, set_notify_trigger
from infra.eventlog.verify import use_json_codecs
from infra.topology import EVENTS_EXCHANGE
from producers import relay
from producers.relay.publisher import amqp_properties
from producers.relay.store import ChainedEvent, RelayStore

if TYPE_CHECKING:
    from collections.abc import Coroutine

    import aiormq

    from infra.settings import Settings

# Realistic rows: 1,000 aggregates with growing versions, a ~200-byte payload.
_PENDING = """INSERT INTO outbox (id, type, version, occurred_at, aggregate_type, aggregate_id,
        aggregate_version, correlation_id, actor, traceparent, data, exchange, routing_key)
    SELECT gen_random_uuid(), 'PlanSubmitted', 1, now(), 'plan',
        md5(($2 || (g % 1000))::text)::uuid, g / 1000 + 1, gen_random_uuid(),
        '{"kind": "user", "id": "user-42"}',
        '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        jsonb_build_object('plan_id', md5(($2 || (g % 1000))::text)::uuid,
            'title', 'Quarterly planning for the platform team', 'step_count', g % 7,
            'project_id', '0b5e7a6c-2f51-4c8e-9a3e-1f2d3c4b5a69'),
        'hisho.events', $3
    FROM generate_series(0, $1 - 1) AS g"""
_PUBLISHED = """INSERT INTO outbox (id, type, version, occurred_at, aggregate_type, aggregate_id,
        aggregate_version, correlation_id, actor, data, exchange, routing_key,
        position, prev_hash, hash, published_at)
    SELECT gen_random_uuid(), 'PlanSubmitted', 1, now(), 'plan', gen_random_uuid(), 1,
        gen_random_uuid(), '{"kind": "system", "id": "bench"}', '{"n": 1}', 'hisho.events',
        'bench.filler', $1 + g, sha256(int8send($1 + g - 1)), sha256(int8send($1 + g)), now()
    FROM generate_series(1, $2) AS g"""
_ROWS = """SELECT * FROM outbox WHERE position > $1 ORDER BY position LIMIT $2"""
_SINGLE = """INSERT INTO outbox (id, type, version, occurred_at, aggregate_type, aggregate_id,
        aggregate_version, correlation_id, actor, data, exchange, routing_key)
    VALUES ($1, 'PlanSubmitted', 1, now(), 'plan', $2, $3, $1,
        '{"kind": "user", "id": "user-42"}', '{"title": "latency probe"}', 'hisho.events', $4)"""


async def add_pending(db: asyncpg.Connection, count: int, routing_key: str) -> None:
    """Commit `count` unpublished events (of 1,000 new aggregates) in one transaction."""
    await db.execute(_PENDING, count, uuid.uuid4().hex, routing_key)


async def relay_throughput(settings: Settings, db: asyncpg.Connection, count: int) -> float:
    """Events/s for an in-process relay to position, chain, publish and mark `count` rows."""
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(run_on_app(relay.run, "relay", settings, stop))
    pending = "SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)"
    while await db.fetchval(pending):  # noqa: ASYNC110  (the database is what we watch)
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return count / elapsed


async def chained_events(db: asyncpg.Connection, after: int, count: int) -> list[ChainedEvent]:
    """The last relayed rows as the relay published them (same bodies, same headers)."""
    await use_json_codecs(db)
    return [
        ChainedEvent(
            id=str(row["id"]),
            position=row["position"],
            prev_hash=bytes(row["prev_hash"]),
            hash=bytes(row["hash"]),
            body=canonical_bytes(row, row["position"]),
            type=row["type"],
            exchange=row["exchange"],
            routing_key=row["routing_key"],
            occurred_at=row["occurred_at"],
            correlation_id=str(row["correlation_id"]),
            traceparent=row["traceparent"],
            aggregate_type=row["aggregate_type"],
            aggregate_id=str(row["aggregate_id"]),
            aggregate_version=row["aggregate_version"],
            partition_key=str(row["aggregate_id"] or row["id"]),
            kind=row["kind"],
            project_id=None if row["project_id"] is None else str(row["project_id"]),
        )
        for row in await db.fetch(_ROWS, after, count)
    ]


def _as_message(event: ChainedEvent) -> aio_pika.Message:
    """The relay's message for `event` as an `aio_pika.Message` (the Exchange.publish path)."""
    props = amqp_properties(event)
    return aio_pika.Message(
        event.body,
        headers=props.headers,
        content_type=props.content_type,
        delivery_mode=props.delivery_mode,
        message_id=props.message_id,
        correlation_id=props.correlation_id,
        timestamp=props.timestamp,
        type=props.message_type,
        app_id=props.app_id,
    )


async def raw_throughput(
    settings: Settings, events: list[ChainedEvent], window: int, *, exchange_api: bool
) -> float:
    """Messages/s of aio-pika publishing with confirms and the same window, no database.

    `exchange_api`: through `Exchange.publish` (each publish waits for its write to drain);
    otherwise through the underlying channel with `wait=False`, as the relay publishes.
    """
    connection = await aio_pika.connect(settings.amqp)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
    underlay = cast("aiormq.Channel", await channel.get_underlay_channel())
    slots = asyncio.Semaphore(window)
    confirms = []
    started = time.perf_counter()
    for event in events:
        await slots.acquire()
        publish: Coroutine[Any, Any, object]
        if exchange_api:
            publish = exchange.publish(_as_message(event), event.routing_key, mandatory=False)
        else:
            publish = underlay.basic_publish(
                event.body,
                exchange=event.exchange,
                routing_key=event.routing_key,
                properties=amqp_properties(event),
                wait=False,
            )
        confirm = asyncio.ensure_future(publish)
        confirm.add_done_callback(lambda _: slots.release())
        confirms.append(confirm)
    await asyncio.gather(*confirms)
    elapsed = time.perf_counter() - started
    await connection.close()
    return len(events) / elapsed


async def writer_throughput(
    dsn: str, *, notify: bool, writers: int = 16, seconds: float = 5
) -> float:
    """Single-row outbox transactions/s from `writers` connections, with or without NOTIFY."""
    admin = await asyncpg.connect(dsn)
    await set_notify_trigger(admin, enabled=notify)
    await admin.add_listener(NOTIFY_CHANNEL, lambda *_: None)  # a relay would be listening
    connections = [await asyncpg.connect(dsn) for _ in range(writers)]
    deadline = time.perf_counter() + seconds
    done = [0]

    async def write(connection: asyncpg.Connection) -> None:
        while time.perf_counter() < deadline:
            await connection.execute(_SINGLE, uuid.uuid4(), uuid.uuid4(), 1, "bench.writer")
            done[0] += 1

    await asyncio.gather(*(write(c) for c in connections))
    for connection in connections:
        await connection.close()
    await set_notify_trigger(admin, enabled=False)
    await admin.execute("DELETE FROM outbox WHERE routing_key = 'bench.writer'")
    await admin.close()
    return done[0] / seconds


async def claim_latency(db: asyncpg.Connection, batch: int, rounds: int = 20) -> float:
    """Median milliseconds of one claim of `batch` rows (positions, chain, commit)."""
    await use_json_codecs(db)
    store = RelayStore(db)
    await store.load_tail()
    timings = []
    for _ in range(rounds):
        await add_pending(db, batch, "bench.claim")
        started = time.perf_counter()
        events = await store.claim(batch)
        timings.append((time.perf_counter() - started) * 1000)
        await store.mark(events[0].position, events[-1].position)
    return statistics.median(timings)


async def fill_published(db: asyncpg.Connection, total: int) -> None:
    """Grow the log to `total` published rows (INSERT … SELECT generate_series), then VACUUM."""
    last = await db.fetchval("SELECT coalesce(max(position), 0) FROM outbox")
    rows = await db.fetchval("SELECT count(*) FROM outbox")
    if total > rows:
        await db.execute(_PUBLISHED, last, total - rows)
    await db.execute("VACUUM ANALYZE outbox")


async def claim_plan(db: asyncpg.Connection, batch: int) -> str:
    """The first line of the claim query's plan (it should be an index scan)."""
    plan = await db.fetch(
        "EXPLAIN SELECT id FROM outbox WHERE published_at IS NULL AND position IS NULL "
        f"ORDER BY seq LIMIT {int(batch)}"
    )
    lines = [str(row[0]).strip().removeprefix("->  ") for row in plan]
    return next((line for line in lines if "Scan" in line), lines[0]).split("  (")[0]
