"""kill -9 of the leading relay in the middle of a batch, under load."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

import pytest

from tests.relay_harness import eventually, leader_pid, wait_for_leader
from tests.relay_load import Chaos, run_under_load

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from infra.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

_IN_FLIGHT = "SELECT count(*) FROM outbox WHERE position IS NOT NULL AND published_at IS NULL"


async def test_the_standby_takes_over_after_a_kill_9_mid_batch_and_nothing_is_lost(
    settings: Settings, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    takeover: list[float] = []

    async def kill_leader_mid_batch(chaos: Chaos) -> None:
        db = await chaos.db()
        leader = await leader_pid(db)
        victim = next(r for r in chaos.relays if r.pid == leader)
        standby = next(r for r in chaos.relays if r.pid != leader)

        async def batch_in_flight() -> bool:
            return bool(await db.fetchval(_IN_FLIGHT) > 0)

        await eventually(batch_in_flight, timeout=20, what="a batch in flight", every=0.001)
        victim.kill()
        killed_at = time.monotonic()
        assert await wait_for_leader(db, [standby.pid]) == standby.pid
        takeover.append(time.monotonic() - killed_at)
        assert victim.process.returncode == -signal.SIGKILL

    await run_under_load(settings, tmp_path, kill_leader_mid_batch)
    record_property("takeover_seconds", round(takeover[0], 3))
