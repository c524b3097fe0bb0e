"""One framework consumer against raw aio-pika consume, in the same run (issue 14).

    python -m bench.consumer [--messages 20000] [--rounds 2] [--warmup 2000]

The framework consumer `bench_consumer` is declared like any other (`infra.consumers`): an
unordered consumer of `TaskRetried` whose handler writes, per message, one projection row
(an upsert through `uow.rows`) and one outbox row (a `QueueTask` command); the framework adds
the inbox row, and the unit's commit writes all three in one statement (group commit and
group load on, as `hisho run` has them). It runs in this process exactly as the test harness
runs it: `consumer_runner` + `consumer_router` + `consumer_broker`, on uvloop, with the
processor's engine options.

Each round publishes `--messages` events once, with confirms, to `hisho.events`; two quorum
queues declared alike by `declare_topology` receive them: the consumer's and a raw one.
Then each is consumed on its own (the order alternates by round): aio-pika on the raw queue
with the consumer's prefetch, acknowledging each message, no decoding, no database; and the
framework consumer until every message's inbox row is committed. Both windows include the
connection set-up; the framework's ends at the commit timestamp of the last inbox row.
Printed per round and best of rounds: messages/s of both, their ratio, CPU microseconds per
message of this process and of the stack's servers, and the target check (framework >= 2,000
messages/s per process; printed, never asserted). After each round every message must have
exactly one inbox row, one projection row and one outbox row, and the parking queue must be
empty: otherwise the run exits with status 1.

It runs in a database and vhost of its own (tests/isolation.py), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
import asyncpg
import psutil
import uvloop

from events import Envelope, Message, catalog
from events.task import QueueTask, TaskRetried
from hisho.bootstrap import CONSUMER_ENGINE
from infra.consumers import Consumer
from infra.consumers.router import consumer_broker, consumer_router, consumer_runner
from infra.db.engine import create_engine
from infra.db.group_commit import GroupCommit
from infra.db.group_load import GroupLoad
from infra.db.migrate import upgrade_to_head
from infra.db.pg_uow import PgUnitOfWork
from infra.db.table import Column, Conflict, Table
from infra.logging import configure_logging
from infra.message_context import MessageContext
from infra.settings import Settings, load_settings
from infra.stack import Stack
from infra.telemetry import tracer_provider
from infra.topology import EVENTS_EXCHANGE, ConsumerQueues, declare_topology
from tests.consumer_support import task_retried

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.db.uow import UnitOfWork

TARGET = 2_000.0  # framework messages/s per process (issue 14)
DEADLINE = 600.0  # seconds a part may take before the run gives up
POLL = 0.1  # seconds between counts of the inbox while the framework consumes
PUBLISH_WINDOW = 500  # confirmed publishes in flight while pre-loading
NAME, RAW = "bench_consumer", "bench_raw"
OWN = "this process"
ROUTING_KEY = catalog.entry_for(TaskRetried).routing_key
ENGINE = CONSUMER_ENGINE  # a consumer's pool, as `hisho run` sizes it

TASKS = Table(  # the consumer's projection: the latest retry of each task
    "bench_consumer_tasks",
    (
        Column("task_id", "uuid", nullable=False, primary_key=True),
        Column("message_id", "uuid", nullable=False),
        Column("attempt", "int", nullable=False),
        Column("updated_at", "timestamptz", nullable=False, written=False, default="now()"),
    ),
    conflict=Conflict(
        key=("task_id",),
        replace=True,
        touch=("updated_at",),
        where="excluded.attempt >= bench_consumer_tasks.attempt",
    ),
)
CREATE_TASKS = (
    "CREATE TABLE bench_consumer_tasks (task_id uuid PRIMARY KEY, message_id uuid NOT NULL,"
    " attempt int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
)


async def handle_task_retried(envelope: Envelope[TaskRetried], uow: UnitOfWork) -> None:
    """Project the retry and queue the task again: one state row, one outbox row."""
    task = envelope.data
    uow.rows.add(TASKS, (task.task_id, envelope.id, task.attempt))
    context = uow.context or MessageContext.caused_by(envelope)
    await uow.outbox.add_command(QueueTask(task_id=task.task_id), context=context)


CONSUMER = Consumer(name=NAME, handlers={TaskRetried: handle_task_retried})


def _unordered(spec: object) -> ConsumerQueues:
    if not isinstance(spec, ConsumerQueues):
        raise TypeError(f"{NAME} is unordered: one queue, its delay queues, its parking queue")
    return spec


QUEUES = _unordered(CONSUMER.queue_spec())
RAW_QUEUES = ConsumerQueues(consumer=RAW, source=EVENTS_EXCHANGE, bindings=(ROUTING_KEY,))


@dataclass(frozen=True)
class Part:
    """One consumer's pass over a round's messages."""

    rate: float  # messages/s
    cpu_us: dict[str, float]  # CPU microseconds per message, by process
    per_statement: float = 0.0  # framework: units per commit statement (group commit)


async def preload(channel: AbstractChannel, envelopes: list[Envelope[Message]]) -> None:
    """Publish persistent, confirmed (`PUBLISH_WINDOW` in flight), as the relay does."""
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
    for start in range(0, len(envelopes), PUBLISH_WINDOW):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        catalog.encode(envelope),
                        message_id=str(envelope.id),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=ROUTING_KEY,
                )
                for envelope in envelopes[start : start + PUBLISH_WINDOW]
            )
        )
    for queue in (QUEUES.queue, RAW_QUEUES.queue):
        await _wait(lambda q=queue: _depth(channel, q), len(envelopes))


async def _depth(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


async def _wait(count: Any, expected: int) -> None:  # noqa: ANN401  (a coroutine factory)
    deadline = time.monotonic() + DEADLINE
    while await count() != expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expected} never reached")
        await asyncio.sleep(POLL)


CpuTimes = dict[str, dict[int, float]]  # by process name: CPU seconds so far of each pid


def _cpu(processes: dict[str, psutil.Process]) -> CpuTimes:
    """CPU seconds so far of each process and (the servers') children, by pid."""
    seconds: CpuTimes = {}
    for name, process in processes.items():
        own = process.pid == os.getpid()
        members = [process] if own else [process, *process.children(recursive=True)]
        seconds[name] = {}
        for member in members:
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                seconds[name][member.pid] = times.user + times.system
    return seconds


def _per_message(before: CpuTimes, after: CpuTimes, n: int) -> dict[str, float]:
    """CPU microseconds per message of each process between two readings.

    A child that started meanwhile counts whole; one that ended meanwhile is missing.
    """
    return {
        name: sum(t - before[name].get(pid, 0.0) for pid, t in pids.items()) / n * 1e6
        for name, pids in after.items()
    }


class Bench:
    """The run's broker connection, database, engine and the processes whose CPU counts."""

    def __init__(self, settings: Settings, db: asyncpg.Connection, engine: AsyncEngine) -> None:
        self.settings, self.db, self.engine = settings, db, engine
        self.group, self.loads = GroupCommit(), GroupLoad()
        servers = {n: psutil.Process(p) for n, p in Stack(settings).pids().items() if n != "epmd"}
        self.processes = {OWN: psutil.Process(), **servers}
        self.applied = 0  # messages the framework applied in earlier rounds

    async def raw(self, n: int) -> Part:
        """aio-pika on the raw queue: consume `n` messages, ack each, nothing else."""
        done, received = asyncio.Event(), 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == n:
                done.set()

        cpu, began = _cpu(self.processes), time.perf_counter()
        connection = await aio_pika.connect_robust(self.settings.amqp)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=CONSUMER.prefetch)
            queue = await channel.get_queue(RAW_QUEUES.queue, ensure=False)
            await queue.consume(on_message)
            await asyncio.wait_for(done.wait(), DEADLINE)
            elapsed = time.perf_counter() - began
            used = _cpu(self.processes)
        finally:
            await connection.close()
        return Part(n / elapsed, _per_message(cpu, used, n))

    async def framework(self, ids: list[uuid.UUID]) -> Part:
        """The framework consumer until every message of `ids` has its inbox row."""
        runner = consumer_runner(
            CONSUMER, lambda: PgUnitOfWork(self.engine, group=self.group, loads=self.loads)
        )
        broker = consumer_broker(self.settings.amqp, consumer_router(runner))
        count = "SELECT count(*) FROM inbox WHERE consumer = $1"
        statements = self.group.statements
        cpu, began = _cpu(self.processes), time.time()
        await broker.start()
        try:
            await _wait(lambda: self.db.fetchval(count, NAME), self.applied + len(ids))
            used = _cpu(self.processes)
        finally:
            await broker.stop()
        self.applied += len(ids)
        tracked = await self.db.fetchval("SELECT current_setting('track_commit_timestamp')")
        last = "pg_xact_commit_timestamp(xmin)" if tracked == "on" else "processed_at"
        ended = await self.db.fetchval(
            f"SELECT max({last}) FROM inbox WHERE consumer = $1 AND message_id = ANY($2)",
            NAME,
            ids,
        )
        n = len(ids)
        per_statement = n / max(1, self.group.statements - statements)
        return Part(n / (ended.timestamp() - began), _per_message(cpu, used, n), per_statement)

    async def verify(self, ids: list[uuid.UUID]) -> list[str]:
        """What is wrong with the effects of `ids` (nothing: every row exactly once)."""
        row = await self.db.fetchrow(VERIFY, NAME, ids)
        assert row is not None
        channel = await (connection := await aio_pika.connect(self.settings.amqp)).channel()
        try:
            parked = await _depth(channel, QUEUES.parked)
            left = await _depth(channel, QUEUES.queue)
        finally:
            await connection.close()
        counts = [*((row[what], what) for what in VERIFIED), (parked, "parked"), (left, "left")]
        problems = [f"{count} messages {what}" for count, what in counts if count]
        totals = [row[f"all {kind}"] for kind in ("inbox", "state", "outbox")]
        if totals != [self.applied] * 3:
            problems.append(f"inbox/state/outbox rows in all {totals}, expected {self.applied}")
        return problems


VERIFIED = ("without inbox row", "without state row", "without outbox row", "duplicated")
VERIFY = """
WITH m AS (SELECT unnest($2::uuid[]) AS id),
i AS (SELECT message_id AS id, count(*) AS n FROM inbox WHERE consumer = $1 GROUP BY 1),
s AS (SELECT message_id AS id, count(*) AS n FROM bench_consumer_tasks GROUP BY 1),
o AS (SELECT causation_id AS id, count(*) AS n FROM outbox GROUP BY 1)
SELECT count(*) FILTER (WHERE i.n IS NULL) AS "without inbox row",
       count(*) FILTER (WHERE s.n IS NULL) AS "without state row",
       count(*) FILTER (WHERE o.n IS NULL) AS "without outbox row",
       count(*) FILTER (WHERE i.n > 1 OR s.n > 1 OR o.n > 1) AS duplicated,
       (SELECT count(*) FROM inbox WHERE consumer = $1) AS "all inbox",
       (SELECT count(*) FROM bench_consumer_tasks) AS "all state",
       (SELECT count(*) FROM outbox) AS "all outbox"
FROM m LEFT JOIN i USING (id) LEFT JOIN s USING (id) LEFT JOIN o USING (id)
"""


async def round_(
    bench: Bench, channel: AbstractChannel, n: int, raw_first: bool
) -> dict[str, Part]:
    """Pre-load `n` messages into both queues, consume each; verify the framework's effects."""
    envelopes = [task_retried(uuid.uuid4(), 1) for _ in range(n)]  # a task each
    await preload(channel, envelopes)
    ids = [envelope.id for envelope in envelopes]
    parts: dict[str, Part] = {}
    for part in ("raw", "framework") if raw_first else ("framework", "raw"):
        parts[part] = await (bench.raw(n) if part == "raw" else bench.framework(ids))
    problems = await bench.verify(ids)
    print(
        f"  verified {n:,} messages: "
        + ("; ".join(problems) or "one inbox, state and outbox row each")
    )
    if problems:
        raise SystemExit(1)
    return parts


def report(rounds: list[dict[str, Part]]) -> list[tuple[str, str]]:
    """The table: each part's rates and CPU, the ratios, the target check."""
    rows = []
    for name, label in (
        ("raw", f"raw aio-pika consume (prefetch {CONSUMER.prefetch}, ack each, no database)"),
        ("framework", "framework consumer (inbox + state + outbox row, one transaction)"),
    ):
        rates = ", ".join(f"{parts[name].rate:,.0f}" for parts in rounds)
        best = max(parts[name].rate for parts in rounds)
        rows.append((label, f"{best:,.0f} messages/s (rounds: {rates})"))
        cpu = {
            k: statistics.median(parts[name].cpu_us[k] for parts in rounds)
            for k in rounds[0][name].cpu_us
        }
        rows.append(
            (
                "  CPU us per message (median of rounds)",
                ", ".join(f"{k} {v:,.0f}" for k, v in cpu.items()),
            )
        )
    raw = max(parts["raw"].rate for parts in rounds)
    framework = max(parts["framework"].rate for parts in rounds)
    own = {
        name: statistics.median(parts[name].cpu_us[OWN] for parts in rounds)
        for name in ("raw", "framework")
    }
    grouped = statistics.median(parts["framework"].per_statement for parts in rounds)
    rows.append(("  units per commit statement (group commit, median)", f"{grouped:.1f}"))
    verdict = "met" if framework >= TARGET else "MISSED"
    return [
        *rows,
        ("framework / raw (best run of each)", f"{framework / raw:.2f}x"),
        (
            "framework / raw, median of rounds run back to back",
            f"{statistics.median(p['framework'].rate / p['raw'].rate for p in rounds):.2f}x",
        ),
        (
            "framework / raw, CPU per message of this process",
            f"{own['raw'] / own['framework']:.2f}x",
        ),
        (
            "framework, one core's worth (1 s / its CPU per message)",
            f"{1e6 / own['framework']:,.0f} messages/s",
        ),
        (
            "framework messages/s per process (best run)",
            f"{framework:,.0f}  (target >= {TARGET:,.0f}: {verdict})",
        ),
    ]


def print_table(rows: list[tuple[str, str]]) -> None:
    """Two aligned columns."""
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


async def main(args: argparse.Namespace) -> None:
    """Migrate the private database, declare both queues, run the rounds, print."""
    settings = load_settings()
    configure_logging(settings)
    tracer_provider(f"hisho-{NAME}")  # spans are recorded, as in `hisho run`
    await upgrade_to_head(settings)
    db = await asyncpg.connect(settings.database_dsn)
    await db.execute(CREATE_TASKS)
    connection = await aio_pika.connect(settings.amqp)
    await declare_topology(connection, [QUEUES, RAW_QUEUES])
    channel = await connection.channel(publisher_confirms=True)
    engine = create_engine(settings, **ENGINE)
    bench = Bench(settings, db, engine)
    try:
        if args.warmup:
            await round_(bench, channel, args.warmup, raw_first=True)
        rounds = [
            await round_(bench, channel, args.messages, raw_first=r % 2 == 0)
            for r in range(args.rounds)
        ]
    finally:
        await engine.dispose()
        await connection.close()
        await db.close()
    print(
        f"\nhisho consumer benchmark: {args.messages:,} messages x {args.rounds} rounds,"
        f" group commit + group load, pool {ENGINE['pool_size']}, load average"
        f" {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )
    print_table(report(rounds))


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2_000, help="messages first, not counted")
    return parser.parse_args()


if __name__ == "__main__":
    from bench.ingress import private_resources  # the run's own database and vhost

    arguments = parse_args()
    with private_resources():
        uvloop.run(main(arguments))
