"""Relay benchmark: throughput against raw aio-pika, commit->consumer latency, the cost of
NOTIFY to writers, and claim latency as the log grows.

    .venv/bin/python bench/relay.py [--events 30000] [--rounds 2] [--rate 1000]
                                    [--seconds 30] [--log-rows 1000000] [--skip-latency]
                                    [--only throughput latency writers claims]

Runs against the servers of HISHO_*_URL (or the local stack), in private databases it
creates and drops, publishing to `hisho.events` with its own routing keys. Targets (issue 4):
relay/raw >= 0.9, latency p50 <= 5 ms and p99 <= 15 ms at 1,000 events/s, claim latency
flat from 10 k to 1 M published rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
from pydantic import PostgresDsn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/relay.py`

from bench import relay_measure as measure
from infra.db.migrate import upgrade_to_head
from infra.settings import Settings, load_settings
from infra.topology import EVENTS_EXCHANGE, declare_topology

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

Row = tuple[str, str, str]
PARTS = ["throughput", "latency", "writers", "claims"]


@asynccontextmanager
async def bench_database(settings: Settings) -> AsyncIterator[Settings]:
    """A fresh, migrated database on the same server; dropped afterwards."""
    name = f"hisho_bench_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(settings.database_dsn)
    admin_dsn = urlunsplit(parts._replace(path="/postgres"))
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = urlunsplit(parts._replace(path=f"/{name}"))
    private = settings.model_copy(update={"database_url": PostgresDsn(dsn)})
    try:
        await upgrade_to_head(private)
        yield private
    finally:
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def throughput(settings: Settings, args: argparse.Namespace) -> list[Row]:
    """Relay vs raw aio-pika, alternating, `rounds` times each; best of each counts."""
    key = f"bench.relay{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(settings.amqp)
    await declare_topology(connection)
    channel = await connection.channel()
    queue = await channel.declare_queue(
        f"hisho.bench_{uuid.uuid4().hex[:8]}",
        durable=True,
        arguments={"x-queue-type": "quorum" if args.queue == "quorum" else "classic"},
    )
    if args.queue != "none":  # unbound: nothing to store, so the publishers are what is measured
        await queue.bind(EVENTS_EXCHANGE, key)
    db = await asyncpg.connect(settings.database_dsn)
    relay_rates, raw_rates = [], []
    try:
        for _ in range(args.rounds):
            after = await db.fetchval("SELECT coalesce(max(position), 0) FROM outbox")
            await measure.add_pending(db, args.events, key)
            relay_rates.append(await measure.relay_throughput(settings, db, args.events))
            events = await measure.chained_events(db, after, args.events)
            window = settings.relay_confirm_window
            raw_rates.append(await measure.raw_throughput(settings, events, window))
            await queue.purge()
    finally:
        await channel.queue_delete(queue.name)
        await connection.close()
        await db.close()
    ratio = max(relay_rates) / max(raw_rates)
    return [
        ("relay throughput (positioned, chained, confirmed, marked)", _rates(relay_rates), ""),
        ("raw aio-pika, same messages, same confirm window", _rates(raw_rates), ""),
        ("relay / raw", f"{ratio:.2f}x", _verdict(ratio >= 0.9, ">= 0.90x")),
    ]


async def latency(settings: Settings, args: argparse.Namespace) -> list[Row]:
    """Commit -> consumer latency at a fixed rate, polling relay and NOTIFY relay."""
    rows = []
    db = await asyncpg.connect(settings.database_dsn)
    try:
        for notify in (False, True):
            samples = await measure.latency(
                settings, db, rate=args.rate, seconds=args.seconds, notify=notify
            )
            p50, p99 = _quantile(samples, 0.5), _quantile(samples, 0.99)
            ok = p50 <= 5 and p99 <= 15
            mode = "NOTIFY wake" if notify else "adaptive poll (default)"
            rows.append(
                (
                    f"commit->consumer, {args.rate}/s for {args.seconds:g}s, {mode}",
                    (
                        f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {max(samples):.1f} ms "
                        f"(n={len(samples)})"
                    ),
                    _verdict(ok, "p50 <= 5, p99 <= 15 ms"),
                )
            )
    finally:
        await db.close()
    return rows


async def writers(settings: Settings) -> list[Row]:
    """Outbox writer throughput with and without the NOTIFY trigger."""
    plain = await measure.writer_throughput(settings.database_dsn, notify=False)
    notifying = await measure.writer_throughput(settings.database_dsn, notify=True)
    return [
        ("outbox writers (16 conns, 1 row/tx), no NOTIFY", f"{plain:,.0f} tx/s", ""),
        (
            "outbox writers (16 conns, 1 row/tx), NOTIFY trigger",
            f"{notifying:,.0f} tx/s ({notifying / plain:.2f}x)",
            "",
        ),
    ]


async def claims(settings: Settings, args: argparse.Namespace) -> list[Row]:
    """Claim latency with 10 k and with `log_rows` published rows already in the log."""
    db = await asyncpg.connect(settings.database_dsn)
    batch = settings.relay_batch_size
    try:
        await measure.fill_published(db, 10_000)
        small = await measure.claim_latency(db, batch)
        await measure.fill_published(db, args.log_rows)
        large = await measure.claim_latency(db, batch)
        plan = await measure.claim_plan(db, batch)
    finally:
        await db.close()
    growth = large / small
    return [
        (f"claim {batch} rows, 10k published rows in the log", f"p50 {small:.1f} ms", ""),
        (
            f"claim {batch} rows, {args.log_rows:,} published rows in the log",
            f"p50 {large:.1f} ms ({growth:.2f}x)",
            _verdict(growth <= 1.5, "no growth"),
        ),
        ("claim query plan", plan, ""),
    ]


def _rates(rates: list[float]) -> str:
    runs = ", ".join(f"{r:,.0f}" for r in rates)
    return f"{max(rates):,.0f}/s (runs: {runs})"


def _quantile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=1000)[int(q * 1000) - 1]


def _verdict(ok: bool, target: str) -> str:
    return f"{'ok ' if ok else 'MISS'} (target {target})"


def print_table(rows: list[Row]) -> None:
    """The results as a plain-text table."""
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {verdict}".rstrip())


async def main(args: argparse.Namespace) -> None:
    """Run every measurement, each in a fresh private database."""
    settings = load_settings()
    parts: dict[str, Callable[[Settings], Awaitable[list[Row]]]] = {
        "throughput": lambda s: throughput(s, args),
        "latency": lambda s: latency(s, args),
        "writers": writers,
        "claims": lambda s: claims(s, args),
    }
    rows: list[Row] = []
    for name, part in parts.items():
        if name in args.only and not (name == "latency" and args.skip_latency):
            async with bench_database(settings) as private:
                rows += await part(private)
    print(
        f"\nhisho relay benchmark: {args.events:,} events x {args.rounds} rounds "
        f"(queue: {args.queue}), batch {settings.relay_batch_size}, "
        f"confirm window {settings.relay_confirm_window}\n"
    )
    print_table(rows)


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--queue",
        default="none",
        choices=["none", "classic", "quorum"],
        help="queue bound to the throughput events (none: the most demanding ratio)",
    )
    parser.add_argument(
        "--only", nargs="+", default=PARTS, choices=PARTS, help="run only these parts"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
