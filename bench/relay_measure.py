"""The relay benchmark's measurements (bench/relay.py runs them and prints the table)."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
import asyncpg

from infra.eventlog.chain import canonical_bytes
from infra.eventlog.notify import NOTIFY_CHANNEL, set_notify_trigger
from infra.eventlog.verify import use_json_codecs
from infra.topology import EVENTS_EXCHANGE
from producers import relay
from producers.relay_publisher import amqp_message
from producers.relay_store import ChainedEvent, RelayStore

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage

    from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

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
    task = asyncio.create_task(relay.run(settings, stop))
    pending = "SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)"
    while await db.fetchval(pending):  # noqa: ASYNC110  (the database is what we watch)
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return count / elapsed


async def chained_events(db: asyncpg.Connection, after: int, count: int) -> list[ChainedEvent]:
    """The last relayed rows as the relay published them (same bodies, same headers)."""
    await use_json_codecs(db)
    return [
        ChainedEvent(
            id=row["id"],
            position=row["position"],
            prev_hash=bytes(row["prev_hash"]),
            hash=bytes(row["hash"]),
            body=canonical_bytes(row, row["position"]),
            type=row["type"],
            exchange=row["exchange"],
            routing_key=row["routing_key"],
            occurred_at=row["occurred_at"],
            correlation_id=row["correlation_id"],
            traceparent=row["traceparent"],
            aggregate_type=row["aggregate_type"],
            aggregate_id=row["aggregate_id"],
            aggregate_version=row["aggregate_version"],
        )
        for row in await db.fetch(_ROWS, after, count)
    ]


async def raw_throughput(settings: Settings, events: list[ChainedEvent], window: int) -> float:
    """Messages/s of plain aio-pika publishing with confirms and the same window."""
    connection = await aio_pika.connect(settings.amqp)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
    slots = asyncio.Semaphore(window)
    confirms = []
    started = time.perf_counter()
    for event in events:
        await slots.acquire()
        confirm = asyncio.ensure_future(
            exchange.publish(amqp_message(event), event.routing_key, mandatory=False)
        )
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


def start_relay_process(settings: Settings, *, notify: bool) -> subprocess.Popen[bytes]:
    """`python -m hisho run relay` against `settings`' servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HISHO_")}
    env |= {
        "HISHO_DATABASE_URL": settings.database_dsn,
        "HISHO_AMQP_URL": settings.amqp,
        "HISHO_RELAY_NOTIFY": "true" if notify else "false",
        "HISHO_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "hisho", "run", "relay"]
    return subprocess.Popen(command, cwd=ROOT, env=env)


async def latency(
    settings: Settings, db: asyncpg.Connection, *, rate: int, seconds: float, notify: bool
) -> list[float]:
    """Commit -> consumer milliseconds at a fixed rate, with a `hisho run relay` process."""
    key = f"bench.latency{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(settings.amqp)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EVENTS_EXCHANGE, key)
    committed: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def on_message(message: AbstractIncomingMessage) -> None:
        arrived.setdefault(str(message.message_id), time.perf_counter())

    await queue.consume(on_message, no_ack=True)
    process = start_relay_process(settings, notify=notify)
    try:
        await _warm_up(db, key, committed, arrived)
        committed.clear()
        await _write_at_rate(settings.database_dsn, key, committed, rate=rate, seconds=seconds)
        deadline = time.perf_counter() + 10
        while not committed.keys() <= arrived.keys() and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        process.terminate()
        process.wait(30)
        await connection.close()
    return [(arrived[i] - at) * 1000 for i, at in committed.items() if i in arrived]


async def _warm_up(
    db: asyncpg.Connection, key: str, committed: dict[str, float], arrived: dict[str, float]
) -> None:
    """Wait until the relay process leads and delivers."""
    while not arrived:
        event_id = uuid.uuid4()
        await db.execute(_SINGLE, event_id, uuid.uuid4(), 1, key)
        committed[str(event_id)] = time.perf_counter()
        await asyncio.sleep(0.2)


async def _write_at_rate(
    dsn: str, key: str, committed: dict[str, float], *, rate: int, seconds: float, writers: int = 4
) -> None:
    """`writers` connections, each committing single-event transactions on a fixed schedule."""
    interval = writers / rate
    count = int(rate * seconds / writers)

    async def write(connection: asyncpg.Connection) -> None:
        aggregate, start = uuid.uuid4(), time.perf_counter()
        for n in range(count):
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event_id = uuid.uuid4()
            await connection.execute(_SINGLE, event_id, aggregate, n + 1, key)
            committed[str(event_id)] = time.perf_counter()

    connections = [await asyncpg.connect(dsn) for _ in range(writers)]
    await asyncio.gather(*(write(c) for c in connections))
    for connection in connections:
        await connection.close()
