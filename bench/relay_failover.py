"""Relay failover under `hisho up`: kill -9 of the leading relay, time until events flow again.

    .venv/bin/python -m bench.relay_failover [--rounds 5]

Runs a private `hisho up` (a stack of its own under a temporary directory, as the e2e tests
do; its first start takes a minute) with what it runs by default: a leader and one hot
standby relay (`HISHO_RELAY_STANDBYS=1`). Each round kills the leader with SIGKILL, commits
one outbox row right after the kill, and measures from the kill until

- *takeover*: another relay holds the relay lock (polled every millisecond), and
- *events again*: that row arrived at a queue bound to its routing key (polled likewise),

then waits for the supervisor to restart the killed relay, the new standby, before the next
round. The figures print per round and as median and max.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import time
import uuid
from typing import TYPE_CHECKING

import aio_pika
import asyncpg

from infra.topology import EVENTS_EXCHANGE
from producers.relay.leader import current_leader
from tests.relay_harness import insert_probes, probes
from tests.up_support import private_up

if TYPE_CHECKING:
    from aio_pika.abc import AbstractQueue

    from tests.up_support import PrivateUp

POLL = 0.001
ROUND_DEADLINE = 60.0


async def _leader(db: asyncpg.Connection) -> int | None:
    name = await current_leader(db)
    return None if name is None else int(name.rsplit(":", 1)[1])


async def _until_led_by_other(db: asyncpg.Connection, old: int) -> None:
    deadline = time.monotonic() + ROUND_DEADLINE
    while (await _leader(db)) in (None, old):
        if time.monotonic() > deadline:
            raise RuntimeError("no relay took over")
        await asyncio.sleep(POLL)


async def _until_delivered(queue: AbstractQueue) -> None:
    deadline = time.monotonic() + ROUND_DEADLINE
    while await queue.get(no_ack=True, fail=False) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the event never arrived")
        await asyncio.sleep(POLL)


def _both_relays_ready(up: PrivateUp) -> bool:
    relays = [item for name, item in up.status().items() if name.startswith("relay")]
    return len(relays) > 1 and all(item["ready"] for item in relays)


async def _round(
    up: PrivateUp, db: asyncpg.Connection, queue: AbstractQueue, key: str
) -> tuple[float, float]:
    deadline = time.monotonic() + ROUND_DEADLINE
    while not _both_relays_ready(up):  # the last round's victim is back as the standby
        if time.monotonic() > deadline:
            raise RuntimeError("the killed relay did not come back")
        await asyncio.sleep(0.2)
    leader = await _leader(db)
    assert leader is not None
    os.kill(leader, signal.SIGKILL)
    killed_at = time.monotonic()
    await insert_probes(db, key, probes(1, 1))
    await _until_led_by_other(db, leader)
    took_over = time.monotonic() - killed_at
    await _until_delivered(queue)
    return took_over, time.monotonic() - killed_at


async def measure(up: PrivateUp, rounds: int) -> list[tuple[float, float]]:
    """Kill the leading relay `rounds` times; (takeover, events again) seconds per round."""
    db = await asyncpg.connect(up.settings.database_dsn)
    broker = await aio_pika.connect(up.settings.amqp)
    try:
        queue = await (await broker.channel()).declare_queue(exclusive=True)
        key = f"relay_probe.bench{uuid.uuid4().hex[:8]}"
        await queue.bind(EVENTS_EXCHANGE, key)
        return [await _round(up, db, queue, key) for _ in range(rounds)]
    finally:
        await broker.close()
        await db.close()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def report(figures: list[tuple[float, float]]) -> None:
    """Print each round and the median and max of both figures."""
    for n, (took_over, flowing) in enumerate(figures, 1):
        print(f"round {n}: takeover {_ms(took_over):>8}   events again {_ms(flowing):>8}")
    for label, values in (
        ("takeover", [f[0] for f in figures]),
        ("events again", [f[1] for f in figures]),
    ):
        median, worst = statistics.median(values), max(values)
        print(f"{label:<13} p50 {_ms(median):>8}  max {_ms(worst):>8}  (n={len(values)})")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with private_up() as up:
        figures = asyncio.run(measure(up, args.rounds))
    print("relay failover under `hisho up` (leader + 1 hot standby), kill -9 of the leader:")
    report(figures)


if __name__ == "__main__":
    main()
