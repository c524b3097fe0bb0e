"""kill -9 of the leading `hisho run scheduler` just before a batch of timers is due.

Two real scheduler processes share a private database: the leader holds the lock, the
standby waits on it. A batch of timers is due a few seconds ahead; the leader is killed
(SIGKILL, no goodbye) just before the first of them. The standby must take over and fire
every timer exactly once: one outbox row per timer, counted by its plan id.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from infra.db.engine import create_engine
from tests.components_support import Components, component_env
from tests.relay_harness import eventually, private_database
from tests.scheduler_support import TIMER_OUTCOMES, schedule_many, scheduler_leader

if TYPE_CHECKING:
    from pathlib import Path

    from infra.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TIMERS = 2000
LEAD_TIME = 4.0  # seconds from scheduling to the first due time
SPREAD = 1.0  # the batch is due over this many seconds
KILL_BEFORE = 0.3  # seconds before the first due time


async def test_the_standby_fires_each_timer_once_after_a_kill_9_of_the_leader(
    settings: Settings, tmp_path: Path
) -> None:
    async with private_database(settings) as private:
        env = component_env(private, HISHO_SCHEDULER_POLL_INTERVAL="0.05")
        first, second = (Components(env, tmp_path / n) for n in ("first", "second"))
        for running in (first, second):
            (running.log_dir).mkdir()
        db = await asyncpg.connect(private.database_dsn)
        engine = create_engine(private)
        try:
            leader = first.start("scheduler").pid
            await eventually(
                lambda: _leads(db, leader), timeout=30, what="the first scheduler to lead"
            )
            standby = second.start("scheduler").pid
            start = datetime.now(UTC) + timedelta(seconds=LEAD_TIME)
            dues = [start + timedelta(seconds=SPREAD * n / TIMERS) for n in range(TIMERS)]
            await schedule_many(engine, dues, "chaos-kill")
            await asyncio.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds() - KILL_BEFORE))
            assert await db.fetchval("SELECT count(*) FROM outbox") == 0  # nothing due yet
            first.kill("scheduler")
            killed_at = datetime.now(UTC)
            await eventually(lambda: _leads(db, standby), timeout=10, what="the standby to lead")

            async def all_fired() -> bool:
                pending = "SELECT count(*) FROM timers WHERE fired_at IS NULL"
                return bool(await db.fetchval(pending) == 0)

            await eventually(all_fired, timeout=60, what="every timer to fire")
            outcomes = await db.fetch(TIMER_OUTCOMES, "chaos-kill")
            assert len(outcomes) == TIMERS
            assert sorted({row["rows"] for row in outcomes}) == [1]  # each exactly once
            assert await db.fetchval("SELECT count(*) FROM outbox") == TIMERS
            assert all(row["fired_at"] >= killed_at for row in outcomes)  # by the standby
            assert first.processes["scheduler"].returncode == -9
        finally:
            first.stop_all()
            codes = second.stop_all()
            await engine.dispose()
            await db.close()
        assert codes == {"scheduler": 0}, codes  # the standby stopped cleanly on SIGTERM


async def _leads(db: asyncpg.Connection, pid: int) -> bool:
    return await scheduler_leader(db) == pid
