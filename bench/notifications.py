"""Notifications benchmark: live-push fan-out latency with 200 SSE clients (issue 17).

    .venv/bin/python bench/notifications.py [--principals 50] [--tabs 4] [--rounds 50]
        [--inapp 10000]

Real processes, as `hisho up` runs them: one `hisho run relay` (LISTEN/NOTIFY on) and one
`hisho run ingress` (tests/components_support.py), in a database and vhost of the run's own
(tests/isolation.py), dropped afterwards. `--principals` people each hold `--tabs` open SSE
streams (`GET /v1/notifications/stream`): 200 connected clients by default, all on the one
ingress process. Each round commits one in-app `NotificationRequested` per person in one
unit of work (as the command processor writes them: through the outbox), `--gap` seconds
apart; the relay publishes them and the ingress's push queue fans each out to its
recipient's streams.

Printed, for the same rounds: the live-push latency (event committed -> SSE client read
it, one sample per client and notification) p50/p99/max; beside it the baseline measured in
the same run, raw aio-pika consume (a plain queue bound to `notification.requested` in this
process: committed -> consumed, one sample per notification), and the ratio; the target
line (fan-out p99 <= 100 ms with 200 clients: met/MISSED).

Before that, the delivery part: `--inapp` in-app notifications committed (in units of work
of 1,000) and published by the relay while no consumer runs, so they wait in the delivery
consumer's queue and in a plain queue bound beside it. Printed: raw aio-pika consume of the
plain queue (acknowledging each, prefetch 100: the baseline) in messages/s, then one
`hisho run notification_delivery` process working its queue off, in in-app notifications/s
(from the first to the last `RecordNotificationDelivered` it wrote), the ratio, and the
target line (>= 1,500 in-app notifications/s per process: met/MISSED).

Every client must receive exactly its person's notifications of the measured rounds, each
once, in log order, and the raw consumer every notification; the delivery consumer must
have written exactly one row and one `RecordNotificationDelivered` per in-app notification;
otherwise the run exits with status 1. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
import asyncpg
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/notifications.py`

from hisho.consumers import declare_all
from infra.auth import Scope, SqlApiKeyStore
from infra.db.engine import create_engine
from infra.db.migrate import upgrade_to_head
from infra.settings import load_settings
from infra.topology import EVENTS_EXCHANGE
from tests.components_support import component_env, components, free_port
from tests.push_support import write_notifications

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aio_pika.abc import AbstractIncomingMessage
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tests.components_support import Components

TARGET_P99 = 0.100  # seconds, fan-out with 200 clients (issue 17)
TARGET_INAPP_RATE = 1_500  # in-app notifications/s through the delivery consumer, per process
UNIT = 1_000  # notifications per unit of work in the delivery part
DEADLINE = 30.0  # seconds a round's deliveries may take before the run gives up


@dataclass
class Client:
    """One SSE stream: whose, and when it read each notification (by notification id)."""

    principal: str
    token: str
    received: dict[str, float] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)
    duplicates: int = 0
    task: asyncio.Task[None] | None = None

    async def listen(self, port: int, ready: asyncio.Event) -> None:
        """Open the stream over a plain socket and record each notification as it arrives."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                "GET /v1/notifications/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n"
            ).encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            raise SystemExit(f"bench: the stream answered {status!r}")
        ready.set()
        while line := await reader.readline():
            if line.startswith(b"data: {"):
                self._record(line[6:])

    def _record(self, data: bytes) -> None:
        # Chunked framing: a data line arrives whole (one chunk per SSE frame).
        now = time.perf_counter()
        notification = json.loads(data)
        if notification["notification_id"] in self.received:
            self.duplicates += 1
            return
        self.received[notification["notification_id"]] = now
        self.positions.append(notification["position"])


@dataclass
class Run:
    """What the rounds committed and when each notification arrived where."""

    committed: dict[str, float] = field(default_factory=dict)  # notification id -> commit time
    recipient: dict[str, str] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)  # notification id -> raw consume time


@dataclass
class Delivery:
    """The delivery part's figures."""

    count: int
    raw_rate: float  # messages/s, plain aio-pika consume with acks
    consumer_rate: float  # in-app notifications/s, `hisho run notification_delivery`


async def published(db: asyncpg.Connection) -> None:
    """Wait until the relay published every outbox row."""
    deadline = time.monotonic() + 300
    while await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
        if time.monotonic() > deadline:
            raise SystemExit("bench: the relay did not publish everything within 300 s")
        await asyncio.sleep(0.05)


async def raw_rate(queue: aio_pika.abc.AbstractQueue, count: int) -> float:
    """Consume `count` waiting messages, acknowledging each; messages/s."""
    done = asyncio.Event()
    seen = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal seen
        await message.ack()
        seen += 1
        if seen == count:
            done.set()

    start = time.perf_counter()
    tag = await queue.consume(on_message)
    await asyncio.wait_for(done.wait(), 300)
    rate = count / (time.perf_counter() - start)
    await queue.cancel(tag)
    return rate


async def delivery_part(
    engine: AsyncEngine,
    db: asyncpg.Connection,
    running: Components,
    connection: aio_pika.abc.AbstractConnection,
    count: int,
) -> Delivery:
    """`count` in-app notifications waiting, then worked off raw and by the consumer."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=100)
    plain = await channel.declare_queue(exclusive=True, auto_delete=True)
    await plain.bind(EVENTS_EXCHANGE, "notification.requested")
    recipients = [f"key:bench{n % 500}" for n in range(count)]
    for first in range(0, count, UNIT):
        await write_notifications(engine, recipients[first : first + UNIT], subject="bench")
    await published(db)
    raw = await raw_rate(plain, count)
    await channel.close()
    running.start("notification_delivery")
    deadline = time.monotonic() + 300
    while await db.fetchval(DELIVERED_RECORDS) < count:
        if time.monotonic() > deadline:
            raise SystemExit("bench: the delivery consumer did not finish within 300 s")
        await asyncio.sleep(0.05)
    running.stop("notification_delivery")
    outcome = await db.fetchrow(DELIVERY_OUTCOME)
    assert outcome is not None  # an aggregate query returns one row
    rows, records, first, last = outcome
    if rows != count or records != count:
        raise SystemExit(f"bench: {rows} rows and {records} records for {count} notifications")
    return Delivery(count, raw, (count - 1) / max((last - first).total_seconds(), 1e-6))


DELIVERED_RECORDS = "SELECT count(*) FROM outbox WHERE type = 'RecordNotificationDelivered'"
DELIVERY_OUTCOME = """SELECT (SELECT count(*) FROM notifications),
    count(*), min(occurred_at), max(occurred_at)
    FROM outbox WHERE type = 'RecordNotificationDelivered'"""


async def people(engine: AsyncEngine, count: int) -> list[tuple[str, str]]:
    """`count` API keys: (principal id, token)."""
    store = SqlApiKeyStore(engine)
    keys = [await store.create(scopes=[Scope.STATE_READ], name="bench push") for _ in range(count)]
    return [(f"key:{issued.key.id}", issued.token) for issued in keys]


async def raw_consumer(connection: aio_pika.abc.AbstractConnection, run: Run) -> None:
    """The baseline: a plain aio-pika queue bound as the ingress's push queue is."""
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(EVENTS_EXCHANGE, "notification.requested")

    async def on_message(message: AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        run.raw.setdefault(json.loads(message.body)["data"]["notification_id"], now)

    await queue.consume(on_message, no_ack=True)


async def commit_round(engine: AsyncEngine, run: Run, principals: Sequence[str]) -> list[str]:
    """One notification per person, in one unit of work; their ids."""
    ids = [str(i) for i in await write_notifications(engine, principals, subject="bench")]
    now = time.perf_counter()
    for notification_id, principal in zip(ids, principals, strict=True):
        run.committed[notification_id] = now
        run.recipient[notification_id] = principal
    return ids


async def delivered(clients: Sequence[Client], run: Run, ids: Sequence[str]) -> None:
    """Wait until every client has its person's notifications of `ids`, and the raw queue all."""
    wanted = {notification_id: run.recipient[notification_id] for notification_id in ids}
    deadline = time.monotonic() + DEADLINE
    while True:
        missing = sum(
            1
            for client in clients
            for notification_id, principal in wanted.items()
            if principal == client.principal and notification_id not in client.received
        ) + sum(1 for notification_id in ids if notification_id not in run.raw)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {missing} deliveries missing after {DEADLINE}s")
        await asyncio.sleep(0.01)


async def warm_up(engine: AsyncEngine, clients: Sequence[Client], run: Run) -> None:
    """Rounds until every client received one: all streams are subscribed."""
    principals = sorted({client.principal for client in clients})
    for _ in range(50):
        ids = set(await commit_round(engine, run, principals))
        await asyncio.sleep(0.2)
        if all(ids & client.received.keys() for client in clients):
            return
    raise SystemExit("bench: not every SSE client was subscribed after 50 warm-up rounds")


def check(clients: Sequence[Client], run: Run, measured: Sequence[str]) -> None:
    """Exactly once, in order, per client; every notification consumed raw."""
    for client in clients:
        mine = [i for i in measured if run.recipient[i] == client.principal]
        got = [i for i in mine if i in client.received]
        if got != mine or client.duplicates:
            raise SystemExit(
                f"bench: a client received {len(got)} of {len(mine)}"
                f" ({client.duplicates} duplicates)"
            )
        if client.positions != sorted(client.positions):
            raise SystemExit("bench: a client received notifications out of log order")
    if not set(measured) <= run.raw.keys():
        raise SystemExit("bench: the raw consumer missed notifications")


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """p50, p99 and max, in seconds."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98], max(values)


def line(values: Sequence[float]) -> str:
    p50, p99, top = quantiles(values)
    return f"p50 {p50 * 1e3:,.1f} ms  p99 {p99 * 1e3:,.1f} ms  max {top * 1e3:,.1f} ms"


def report(
    clients: Sequence[Client], run: Run, measured: Sequence[str], delivery: Delivery
) -> list[tuple[str, str]]:
    """The printed table."""
    pushed = [
        client.received[i] - run.committed[i]
        for client in clients
        for i in measured
        if run.recipient[i] == client.principal
    ]
    raw = [run.raw[i] - run.committed[i] for i in measured]
    push_p50, push_p99, _ = quantiles(pushed)
    raw_p50, raw_p99, _ = quantiles(raw)
    verdict = "met" if push_p99 <= TARGET_P99 else "MISSED"
    rate = delivery.consumer_rate
    return [
        (
            f"raw aio-pika consume (acks): {delivery.count:,} waiting",
            f"{delivery.raw_rate:,.0f} msg/s",
        ),
        (
            "delivery consumer, in-app (one process)",
            f"{rate:,.0f} notifications/s ({rate / delivery.raw_rate:.2f}x raw)",
        ),
        (
            "  target: >= 1,500 in-app notifications/s per process",
            f"{'met' if rate >= TARGET_INAPP_RATE else 'MISSED'} ({rate:,.0f}/s)",
        ),
        (f"raw aio-pika consume: {len(raw):,} notifications", line(raw)),
        (f"live push, {len(clients)} SSE clients: {len(pushed):,} deliveries", line(pushed)),
        ("  push / raw", f"p50 {push_p50 / raw_p50:.2f}x  p99 {push_p99 / raw_p99:.2f}x"),
        (
            f"  target: fan-out p99 <= 100 ms with {len(clients)} clients",
            f"{verdict} (p99 {push_p99 * 1e3:,.1f} ms)",
        ),
    ]


async def main(args: argparse.Namespace) -> None:
    """Migrate the private database, run relay and ingress processes, measure, print."""
    settings = load_settings()
    await upgrade_to_head(settings)
    connection = await aio_pika.connect(settings.amqp)
    await declare_all(connection)
    engine = create_engine(settings)
    db = await asyncpg.connect(settings.database_dsn)
    port = free_port()
    env = component_env(
        settings,
        HISHO_LOG_LEVEL="warning",
        HISHO_RELAY_NOTIFY="true",
        HISHO_INGRESS_PORT=str(port),
        HISHO_INGRESS_RATE_LIMIT="100000000",
    )
    run = Run()
    try:
        keys = await people(engine, args.principals)
        clients = [Client(p, t) for p, t in keys for _ in range(args.tabs)]
        with (
            tempfile.TemporaryDirectory(prefix="hisho-bench-notifications-") as logs,
            components(env, Path(logs), ("relay",)) as running,
        ):
            delivery = await delivery_part(engine, db, running, connection, args.inapp)
            await raw_consumer(connection, run)
            running.start("ingress")
            for client in clients:
                ready = asyncio.Event()
                client.task = asyncio.create_task(client.listen(port, ready))
                await asyncio.wait_for(ready.wait(), 10)
            await warm_up(engine, clients, run)
            measured: list[str] = []
            principals = [p for p, _ in keys]
            for _ in range(args.rounds):
                ids = await commit_round(engine, run, principals)
                await delivered(clients, run, ids)
                measured += ids
                await asyncio.sleep(args.gap)
            for client in clients:
                if client.task is not None:
                    client.task.cancel()
    finally:
        await engine.dispose()
        await db.close()
        await connection.close()
    check(clients, run, measured)
    print(
        f"\nhisho notifications benchmark: {len(clients)} SSE clients ({args.principals} people x"
        f" {args.tabs} streams) on one ingress process, {args.rounds} rounds of"
        f" {args.principals} notifications, load average"
        f" {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )
    table = report(clients, run, measured, delivery)
    width = max(len(name) for name, _ in table)
    for name, value in table:
        print(f"{name:<{width}}  {value}")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--principals", type=int, default=50)
    parser.add_argument("--tabs", type=int, default=4, help="SSE streams per person")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between rounds")
    parser.add_argument("--inapp", type=int, default=10_000, help="delivery part's notifications")
    return parser.parse_args()


if __name__ == "__main__":
    from bench.ingress import private_resources  # the run's own database and vhost

    arguments = parse_args()
    with private_resources():
        uvloop.run(main(arguments))
