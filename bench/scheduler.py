"""Scheduler benchmark: 10,000 timers due in the same second, beside the relay (issue 16).

    .venv/bin/python bench/scheduler.py [--timers 10000] [--events 10000] [--lead 4]

Real processes, as `hisho up` runs them: one `hisho run relay` and one `hisho run scheduler`
(tests/components_support.py), in a database and vhost of the run's own (tests/isolation.py),
dropped afterwards. Three parts, in one run:

1. relay alone: the rows a timers part gives the relay (`--events` event rows and
   `--timers` `ExpirePlan` command rows, built as a fired timer's are) committed at once,
   no timer due; the relay's publish rate (rows / (last published_at - commit)): the
   baseline.
2. spread: `--timers` timers (scheduled through `infra.scheduler.timers` in units of work)
   due evenly within one second, i.e. 10,000 timers/s of dues, while `--events` more rows
   are committed for the relay at the first due time. Printed: fired/s, the lag due -> fired
   (`fired_at`: when the firing transaction took the timer; it commits a batch later) and
   due -> published (the relay's mark, behind the `--events` rows committed at the first
   due time: end to end), p50/p99/max, the target line (lag p99
   <= 1 s at 10,000 timers/s of dues: met/MISSED), and the relay's rows/s (events and fired
   commands) during the part against part 1.
3. burst: `--timers` timers all due at one instant: the scheduler's capacity in fired/s.

Every timer must have fired exactly once (one outbox row per timer, counted by its plan
id) and every row must be published, or the run exits with status 1. Timings are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
import asyncpg
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/scheduler.py`

from events.plan import ExpirePlan
from hisho.consumers import declare_all
from infra.db.engine import create_engine
from infra.db.migrate import upgrade_to_head
from infra.db.outbox import command_envelope, outbox_row
from infra.db.tables import OUTBOX
from infra.message_context import MessageContext
from infra.scheduler.timers import SCHEDULER_ACTOR
from infra.settings import load_settings
from tests.components_support import component_env, components
from tests.relay_harness import insert_probes, probes
from tests.scheduler_support import TIMER_OUTCOMES, schedule_many

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncEngine

TARGET_LAG_P99 = 1.0  # seconds, at 10,000 timers/s of dues (issue 16)
DEADLINE = 300.0  # seconds a part may take before the run gives up
ROUTING_KEY = "bench.scheduler"  # the relay's events: bound to no queue, nothing is stored


@dataclass
class Part:
    """What one part measured."""

    name: str
    rows: int  # outbox rows the relay published in the part
    relay_seconds: float  # from the part's start to the last row published
    timers: int = 0
    fire_seconds: float = 0.0  # from the first due time to the last fired_at
    transactions: int = 0  # firing transactions (distinct fired_at)
    during_firing: float = 0.0  # rows/s the relay published from the first due to the last fired
    fired_lags: tuple[float, ...] = ()
    published_lags: tuple[float, ...] = ()

    @property
    def relay_rate(self) -> float:
        return self.rows / self.relay_seconds

    @property
    def fired_rate(self) -> float:
        return self.timers / self.fire_seconds if self.fire_seconds else float("inf")


async def wait_published(db: asyncpg.Connection, what: str) -> None:
    """Wait until every outbox row is published and no timer is pending."""
    deadline = time.monotonic() + DEADLINE
    query = (
        "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL)"
        " + (SELECT count(*) FROM timers WHERE fired_at IS NULL)"
    )
    while await db.fetchval(query):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not finish within {DEADLINE}s")
        await asyncio.sleep(0.05)


async def commit_events(db: asyncpg.Connection, count: int) -> datetime:
    """Commit `count` outbox rows for the relay in one transaction; its commit time (roughly)."""
    async with db.transaction():
        await insert_probes(db, ROUTING_KEY, probes(max(1, count // 10), 10)[:count])
    return datetime.now(UTC)


async def relay_alone(db: asyncpg.Connection, events: int, commands: int) -> Part:
    """The baseline: the relay publishing the same rows a timers part gives it, no timer due.

    `events` rows as `commit_events` writes them, and `commands` `ExpirePlan` rows as a fired
    timer writes them (the same envelope builder and OUTBOX insert), committed at once.
    """
    context = MessageContext.start(SCHEDULER_ACTOR)
    rows = [
        outbox_row(command_envelope(ExpirePlan(plan_id=uuid.uuid4()), context=context))
        for _ in range(commands)
    ]
    async with db.transaction():
        await insert_probes(db, ROUTING_KEY, probes(max(1, events // 10), 10)[:events])
        await db.execute(OUTBOX.insert_sql(1), *OUTBOX.arrays(rows))
    start = datetime.now(UTC)
    await wait_published(db, "relay alone")
    last = await db.fetchval("SELECT max(published_at) FROM outbox")
    return Part("relay alone", events + commands, (last - start).total_seconds())


async def timers_part(
    db: asyncpg.Connection, engine: AsyncEngine, args: argparse.Namespace, *, spread: float
) -> Part:
    """`--timers` timers due over `spread` seconds, `--events` relay rows at the first due."""
    group = f"bench-{'spread' if spread else 'burst'}"
    start = datetime.now(UTC) + timedelta(seconds=args.lead)
    dues = [start + timedelta(seconds=spread * n / args.timers) for n in range(args.timers)]
    await schedule_many(engine, dues, group)
    early = (start - datetime.now(UTC)).total_seconds()
    if early < 0.5:
        raise SystemExit(f"bench: scheduling took longer than --lead {args.lead}s; raise it")
    before = await db.fetchval("SELECT count(*) FROM outbox")
    await asyncio.sleep(early)
    await commit_events(db, args.events)
    await wait_published(db, group)
    return await measured(db, group, start, before, args)


async def measured(
    db: asyncpg.Connection, group: str, start: datetime, before: int, args: argparse.Namespace
) -> Part:
    """Read a part's figures back, checking every timer fired once and was published."""
    outcomes = await db.fetch(TIMER_OUTCOMES, group)
    wrong = [row["key"] for row in outcomes if row["rows"] != 1 or row["fired_at"] is None]
    if len(outcomes) != args.timers or wrong:
        raise SystemExit(f"bench: {len(wrong)} of {len(outcomes)} timers not fired exactly once")
    rows = await db.fetchval("SELECT count(*) FROM outbox") - before
    if rows != args.timers + args.events:
        raise SystemExit(f"bench: {rows} outbox rows, expected {args.timers + args.events}")
    published = await db.fetch(
        "SELECT t.due_at, o.published_at FROM timers t JOIN outbox o ON o.id = t.command_id"
        " WHERE t.timer_group = $1",
        group,
    )
    last_published = await db.fetchval("SELECT max(published_at) FROM outbox")
    fired = [row["fired_at"] for row in outcomes]
    window = max((max(fired) - start).total_seconds(), 0.001)
    during = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE published_at BETWEEN $1 AND $2", start, max(fired)
    )
    return Part(
        group,
        rows,
        (last_published - start).total_seconds(),
        timers=len(outcomes),
        fire_seconds=(max(fired) - start).total_seconds(),
        transactions=len(set(fired)),
        during_firing=during / window,
        fired_lags=tuple((r["fired_at"] - r["due_at"]).total_seconds() for r in outcomes),
        published_lags=tuple((r["published_at"] - r["due_at"]).total_seconds() for r in published),
    )


def quantiles(values: Sequence[float]) -> str:
    """p50, p99 and max, in milliseconds."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    p50, p99, top = cuts[49] * 1e3, cuts[98] * 1e3, max(values) * 1e3
    return f"p50 {p50:,.1f} ms  p99 {p99:,.1f} ms  max {top:,.1f} ms"


def report(
    alone: Part, spread: Part, burst: Part, args: argparse.Namespace
) -> list[tuple[str, str]]:
    """The printed table."""
    p99 = statistics.quantiles(spread.fired_lags, n=100, method="inclusive")[98]
    verdict = "met" if p99 <= TARGET_LAG_P99 else "MISSED"
    due_rate = args.timers  # due within one second
    return [
        (
            f"relay alone: {alone.rows:,} rows (events + commands) at once",
            f"{alone.relay_rate:,.0f} rows/s published",
        ),
        (
            f"spread: {spread.timers:,} timers due within 1 s ({due_rate:,}/s)",
            f"{spread.fired_rate:,.0f} fired/s in {spread.transactions:,} transactions",
        ),
        ("  lag due -> fired", quantiles(spread.fired_lags)),
        (f"  lag due -> published (behind {args.events:,} rows)", quantiles(spread.published_lags)),
        (
            "  target: lag p99 <= 1 s at 10,000 timers/s of dues",
            f"{verdict} (p99 {p99 * 1e3:,.1f} ms at {due_rate:,}/s)",
        ),
        ("  relay while the scheduler fired", f"{spread.during_firing:,.0f} rows/s"),
        (
            f"  relay meanwhile: {spread.rows:,} rows (events + commands)",
            f"{spread.relay_rate:,.0f} rows/s ({spread.relay_rate / alone.relay_rate:.2f}x alone)",
        ),
        (
            f"burst: {burst.timers:,} timers due at one instant",
            (
                f"{burst.fired_rate:,.0f} fired/s in {burst.transactions:,} transactions"
                f" ({burst.fired_rate / alone.relay_rate:.1f}x the relay alone)"
            ),
        ),
        ("  lag due -> fired", quantiles(burst.fired_lags)),
        (f"  lag due -> published (behind {args.events:,} rows)", quantiles(burst.published_lags)),
        ("  relay while the scheduler fired", f"{burst.during_firing:,.0f} rows/s"),
        (
            f"  relay meanwhile: {burst.rows:,} rows (events + commands)",
            f"{burst.relay_rate:,.0f} rows/s ({burst.relay_rate / alone.relay_rate:.2f}x alone)",
        ),
    ]


async def main(args: argparse.Namespace) -> None:
    """Migrate the private database, run relay and scheduler processes, measure, print."""
    settings = load_settings()
    await upgrade_to_head(settings)
    connection = await aio_pika.connect(settings.amqp)
    await declare_all(connection)
    await connection.close()
    db = await asyncpg.connect(settings.database_dsn)
    engine = create_engine(settings)
    env = component_env(settings, HISHO_LOG_LEVEL="warning", HISHO_RELAY_POLL_INTERVAL="0.05")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="hisho-bench-scheduler-") as logs,
            components(env, Path(logs), ("relay", "scheduler")),
        ):
            alone = await relay_alone(db, args.events, args.timers)
            spread = await timers_part(db, engine, args, spread=1.0)
            burst = await timers_part(db, engine, args, spread=0.0)
    finally:
        await engine.dispose()
        await db.close()
    print(
        f"\nhisho scheduler benchmark: {args.timers:,} timers, {args.events:,} relay rows per"
        f" part, batch {settings.scheduler_batch_size}, load average"
        f" {' '.join(f'{v:.1f}' for v in os.getloadavg())}\n"
    )
    table = report(alone, spread, burst, args)
    width = max(len(name) for name, _ in table)
    for name, value in table:
        print(f"{name:<{width}}  {value}")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--timers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--lead", type=float, default=4.0, help="seconds to the first due time")
    return parser.parse_args()


if __name__ == "__main__":
    from bench.ingress import private_resources  # the run's own database and vhost

    arguments = parse_args()
    with private_resources():
        uvloop.run(main(arguments))
