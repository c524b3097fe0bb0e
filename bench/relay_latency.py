"""Commit -> consumer latency of a `hisho run relay` process, and the floor under it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

import aio_pika
import asyncpg

from infra.topology import EVENTS_EXCHANGE
from producers.relay.publisher import amqp_properties
from producers.relay.store import ChainedEvent

if TYPE_CHECKING:
    import aiormq
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

    from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
WRITERS = 4

_SINGLE = """INSERT INTO outbox (id, type, version, occurred_at, aggregate_type, aggregate_id,
        aggregate_version, correlation_id, actor, data, exchange, routing_key)
    VALUES ($1, 'PlanSubmitted', 1, now(), 'plan', $2, $3, $1,
        '{"kind": "user", "id": "user-42"}', '{"title": "latency probe"}', 'hisho.events', $4)"""


@dataclass
class Timings:
    """When each message was sent (committed or published) and when it arrived."""

    sent: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    commit_ms: list[float] = field(default_factory=list)  # how long each writer commit took

    def latencies(self) -> list[float]:
        """Milliseconds from sent to arrived, for every message that arrived."""
        return [(self.arrived[i] - at) * 1000 for i, at in self.sent.items() if i in self.arrived]

    async def all_arrived(self, within: float = 10) -> None:
        """Wait (bounded) until every sent message arrived."""
        deadline = time.perf_counter() + within
        while not self.sent.keys() <= self.arrived.keys() and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def _listen(channel: AbstractChannel, key: str, timings: Timings) -> None:
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(EVENTS_EXCHANGE, key)

    async def on_message(message: AbstractIncomingMessage) -> None:
        timings.arrived.setdefault(str(message.message_id), time.perf_counter())

    await queue.consume(on_message, no_ack=True)


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


async def relay_latency(
    settings: Settings, db: asyncpg.Connection, *, rate: int, seconds: float, notify: bool
) -> Timings:
    """Writers commit single events at `rate`/s; a consumer times their arrival."""
    key = f"bench.latency{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(settings.amqp)
    timings = Timings()
    await _listen(await connection.channel(), key, timings)
    process = start_relay_process(settings, notify=notify)
    try:
        await _warm_up(db, key, timings)
        timings = Timings(arrived=timings.arrived)
        await _write_at_rate(settings.database_dsn, key, timings, rate=rate, seconds=seconds)
        await timings.all_arrived()
    finally:
        process.terminate()
        process.wait(30)
        await connection.close()
    return timings


async def _warm_up(db: asyncpg.Connection, key: str, timings: Timings) -> None:
    """Wait until the relay process leads and delivers."""
    while not timings.arrived:
        event_id = uuid.uuid4()
        await db.execute(_SINGLE, event_id, uuid.uuid4(), 1, key)
        timings.sent[str(event_id)] = time.perf_counter()
        await asyncio.sleep(0.2)


async def _write_at_rate(
    dsn: str, key: str, timings: Timings, *, rate: int, seconds: float
) -> None:
    """WRITERS connections, each committing single-event transactions on a fixed schedule."""
    interval, count = WRITERS / rate, int(rate * seconds / WRITERS)

    async def write(connection: asyncpg.Connection) -> None:
        aggregate, start = uuid.uuid4(), time.perf_counter()
        for n in range(count):
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event_id = uuid.uuid4()
            began = time.perf_counter()
            await connection.execute(_SINGLE, event_id, aggregate, n + 1, key)
            timings.sent[str(event_id)] = done = time.perf_counter()
            timings.commit_ms.append((done - began) * 1000)

    connections = [await asyncpg.connect(dsn) for _ in range(WRITERS)]
    await asyncio.gather(*(write(c) for c in connections))
    for connection in connections:
        await connection.close()


async def broker_floor(settings: Settings, *, rate: int, seconds: float) -> Timings:
    """Publish -> consumer at `rate`/s with the relay's publishing, no database: the floor."""
    key = f"bench.floor{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(settings.amqp)
    timings = Timings()
    await _listen(await connection.channel(), key, timings)
    channel = await connection.channel(publisher_confirms=True)
    underlay = cast("aiormq.Channel", await channel.get_underlay_channel())
    confirms, start = [], time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event = _probe(key, n + 1)
        timings.sent[event.id] = time.perf_counter()
        publish = underlay.basic_publish(
            event.body,
            exchange=EVENTS_EXCHANGE,
            routing_key=key,
            properties=amqp_properties(event),
            wait=False,
        )
        confirms.append(asyncio.ensure_future(publish))
    await asyncio.gather(*confirms)
    await timings.all_arrived()
    await connection.close()
    return timings


def _probe(key: str, position: int) -> ChainedEvent:
    event_id = str(uuid.uuid4())
    return ChainedEvent(
        id=event_id,
        position=position,
        prev_hash=bytes(32),
        hash=bytes(32),
        body=b'{"title": "latency probe", "padding": "' + b"x" * 300 + b'"}',
        type="PlanSubmitted",
        exchange=EVENTS_EXCHANGE,
        routing_key=key,
        occurred_at=datetime.now(UTC),
        correlation_id=event_id,
        traceparent=None,
        aggregate_type="plan",
        aggregate_id=event_id,
        aggregate_version=1,
        partition_key=event_id,
        kind="event",
        project_id=None,
    )
