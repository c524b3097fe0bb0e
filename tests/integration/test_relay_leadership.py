"""Two `hisho run relay` processes: one leads and publishes, the other waits and takes over."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import asyncpg

from tests.relay_consumers import (
    Collector,
    assert_complete_without_gaps,
    log_positions,
    plain_queue,
)
from tests.relay_harness import (
    RelayProcess,
    eventually,
    insert_probes,
    leader_pid,
    private_database,
    probes,
    unique_routing_key,
    wait_for_leader,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from aio_pika.abc import AbstractRobustConnection

    from infra.settings import Settings

TAKEOVER_BOUND = 2.0  # seconds: docs/relay.md's requirement (it measured 1-50 ms); generous
_WAITING = """SELECT count(*) FROM pg_stat_activity
    WHERE application_name = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'"""


async def test_two_relays_one_publishes_the_other_waits_then_takes_over(
    settings: Settings, amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    key, collector = unique_routing_key(), Collector()
    channel = await amqp.channel()
    await collector.consume(await plain_queue(channel, key))
    async with private_database(settings) as private:
        db = await asyncpg.connect(private.database_dsn)
        first = RelayProcess(private, tmp_path / "first.log")
        second = None
        try:
            assert await wait_for_leader(db, [first.pid]) == first.pid
            second = RelayProcess(private, tmp_path / "second.log")

            async def second_waits() -> bool:
                return bool(await db.fetchval(_WAITING, f"hisho-relay:{second.pid}") == 1)

            await eventually(second_waits, timeout=30, what="the second relay to wait on the lock")
            for _ in range(10):
                await insert_probes(db, key, probes(10, 3))

            async def all_received() -> bool:
                return len(collector.ids()) == 300

            await eventually(all_received, timeout=30, what="300 events")
            assert await leader_pid(db) == first.pid
            assert len(collector.deliveries) == 300  # nobody published anything twice

            assert first.stop() == 0  # SIGTERM: a clean exit
            assert await wait_for_leader(db, [second.pid]) == second.pid
            await insert_probes(db, key, probes(10, 3))

            async def rest_received() -> bool:
                return len(collector.ids()) == 330

            await eventually(rest_received, timeout=30, what="30 more events from the standby")
            assert second.stop() == 0
            assert_complete_without_gaps(collector.deliveries, await log_positions(db))
        finally:
            first.stop()
            if second is not None:
                second.stop()
            await db.close()
            await channel.close()


async def test_after_a_kill_9_of_the_leader_the_standby_publishes_within_the_bound(
    settings: Settings,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    key, collector = unique_routing_key(), Collector()
    channel = await amqp.channel()
    await collector.consume(await plain_queue(channel, key))
    async with private_database(settings) as private:
        db = await asyncpg.connect(private.database_dsn)
        leader = RelayProcess(private, tmp_path / "leader.log")
        standby = None
        try:
            assert await wait_for_leader(db, [leader.pid]) == leader.pid
            standby = RelayProcess(private, tmp_path / "standby.log")

            async def standby_waits() -> bool:
                return bool(await db.fetchval(_WAITING, f"hisho-relay:{standby.pid}") == 1)

            await eventually(standby_waits, timeout=30, what="the standby to wait on the lock")
            leader.kill()
            killed_at = time.monotonic()
            await insert_probes(db, key, probes(5, 2))  # committed after the kill
            assert await wait_for_leader(db, [standby.pid]) == standby.pid
            took_over = time.monotonic() - killed_at

            async def all_received() -> bool:
                return len(collector.ids()) == 10

            await eventually(all_received, timeout=30, what="10 events from the standby")
            flowing = time.monotonic() - killed_at
            record_property("takeover_seconds", round(took_over, 3))
            record_property("events_again_seconds", round(flowing, 3))
            assert took_over < TAKEOVER_BOUND, took_over
            assert flowing < TAKEOVER_BOUND, flowing
            assert_complete_without_gaps(collector.deliveries, await log_positions(db))
        finally:
            leader.stop()
            if standby is not None:
                standby.stop()
            await db.close()
            await channel.close()
