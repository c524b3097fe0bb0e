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
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
from pydantic import PostgresDsn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/relay.py`

from bench import relay_latency as latencies
from bench import relay_measure as measure
from hisho.consumers import declare_all
from infra.db.migrate import upgrade_to_head
from infra.settings import Settings, load_settings
from infra.topology import EVENTS_EXCHANGE

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
    await declare_all(connection)
    channel = await connection.channel()
    queue = await channel.declare_queue(
        f"hisho.bench_{uuid.uuid4().hex[:8]}",
        durable=True,
        arguments={"x-queue-type": "quorum" if args.queue == "quorum" else "classic"},
    )
    if args.queue != "none":  # unbound: nothing to store, so the publishers are what is measured
        await queue.bind(EVENTS_EXCHANGE, key)
    db = await asyncpg.connect(settings.database_dsn)
    runs: dict[str, list[tuple[float, float]]] = {"relay": [], "channel": [], "exchange": []}
    window = settings.relay_confirm_window
    try:
        for _ in range(args.rounds):
            after = await db.fetchval("SELECT coalesce(max(position), 0) FROM outbox")
            await measure.add_pending(db, args.events, key)
            relay = measure.relay_throughput(settings, db, args.events)
            runs["relay"].append(await _timed(relay, args.events))
            events = await measure.chained_events(db, after, args.events)
            for api in ("channel", "exchange"):
                raw = measure.raw_throughput(
                    settings, events, window, exchange_api=api == "exchange"
                )
                runs[api].append(await _timed(raw, args.events))
            await queue.purge()
    finally:
        await channel.queue_delete(queue.name)
        await connection.close()
        await db.close()
    return _throughput_rows(runs)


async def _timed(measurement: Awaitable[float], count: int) -> tuple[float, float]:
    """The measured rate and this process's CPU microseconds per event while it ran."""
    cpu = time.process_time()
    rate = await measurement
    return rate, (time.process_time() - cpu) / count * 1e6


def _throughput_rows(runs: dict[str, list[tuple[float, float]]]) -> list[Row]:
    best = {name: max(rate for rate, _ in result) for name, result in runs.items()}
    cpu = {name: statistics.median(c for _, c in result) for name, result in runs.items()}
    raw = max(best["channel"], best["exchange"])
    per_round = statistics.median(
        r / max(c, e) for (r, _), (c, _), (e, _) in zip(*runs.values(), strict=True)
    )
    raw_cpu = min(cpu["channel"], cpu["exchange"])
    labels = {
        "relay": "relay (positioned, chained, confirmed, marked)",
        "channel": "raw aio-pika, same messages and window, channel publish",
        "exchange": "raw aio-pika, same messages and window, Exchange.publish",
    }
    rows = [
        (labels[name], f"{_rates([r for r, _ in result])}  cpu {cpu[name]:.0f} us/event", "")
        for name, result in runs.items()
    ]
    return [
        *rows,
        (
            "relay / best raw (best run of each)",
            f"{best['relay'] / raw:.2f}x",
            _verdict(best["relay"] / raw >= 0.9, ">= 0.90x"),
        ),
        ("relay / raw, median of rounds run back to back", f"{per_round:.2f}x", ""),
        ("relay / raw, cpu per event (load-independent)", f"{raw_cpu / cpu['relay']:.2f}x", ""),
    ]


async def latency(settings: Settings, args: argparse.Namespace) -> list[Row]:
    """Commit -> consumer latency at a fixed rate (polling relay, NOTIFY relay), and the floor."""
    floor = await latencies.broker_floor(settings, rate=args.rate, seconds=min(args.seconds, 10))
    rows = [
        (
            f"floor: publish->consumer, {args.rate}/s, no relay, no database",
            _spread(floor.latencies()),
            "",
        )
    ]
    db = await asyncpg.connect(settings.database_dsn)
    try:
        for notify in (False, True):
            run = await latencies.relay_latency(
                settings, db, rate=args.rate, seconds=args.seconds, notify=notify
            )
            samples = run.latencies()
            ok = _quantile(samples, 0.5) <= 5 and _quantile(samples, 0.99) <= 15
            mode = "NOTIFY wake" if notify else "polling (default)"
            rows.append(
                (
                    f"commit->consumer, {args.rate}/s for {args.seconds:g}s, {mode}",
                    _spread(samples),
                    _verdict(ok, "p50 <= 5, p99 <= 15 ms"),
                )
            )
            rows.append((f"  writers' own commit time, {mode}", _spread(run.commit_ms), ""))
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


def _spread(samples: list[float]) -> str:
    if len(samples) < 2:
        return "no samples"
    p50, p99 = _quantile(samples, 0.5), _quantile(samples, 0.99)
    return f"p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {max(samples):.1f} ms (n={len(samples)})"


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
