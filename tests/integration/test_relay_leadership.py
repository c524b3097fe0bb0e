"""Two `hisho run relay` processes: one leads and publishes, the other waits and takes over."""

from __future__ import annotations

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
    from pathlib import Path

    from aio_pika.abc import AbstractRobustConnection

    from infra.settings import Settings

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
