"""RabbitMQ stopped and restarted while timers fire, on a private stack.

A real `hisho run scheduler` and `hisho run relay` share a private database; timers fall
due over several seconds. The broker goes away while they fire: the scheduler keeps writing
their commands into the outbox (it needs no broker), the relay catches up once RabbitMQ is
back. Every fired command must reach `hisho.commands` (a durable queue bound to it), and
each timer's command must be in the outbox once: copies on the wire keep their message id.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import aio_pika
import asyncpg
import pytest

from events import catalog
from events.plan import ExpirePlan
from hisho.consumers import declare_all
from infra.db.engine import create_engine
from infra.topology import COMMANDS_EXCHANGE
from tests.components_support import Components, component_env
from tests.private_stack import private_stack
from tests.relay_consumers import Collector
from tests.relay_harness import eventually, private_database
from tests.scheduler_support import TIMER_OUTCOMES, schedule_many

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from infra.settings import Settings
    from infra.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TIMERS = 4000
LEAD_TIME = 2.0  # seconds from scheduling to the first due time
SPREAD = 20.0  # the timers fall due over this many seconds (a broker stop takes a few)
GROUP = "chaos-broker"
_FIRED = "SELECT count(*) FROM timers WHERE fired_at IS NOT NULL"
_UNPUBLISHED = "SELECT count(*) FROM outbox WHERE published_at IS NULL"


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Stack, Settings]]:
    with private_stack("hisho-scheduler-chaos-") as servers:
        yield servers


async def test_timers_firing_through_a_rabbitmq_restart_all_arrive_once_in_effect(
    stack: tuple[Stack, Settings], tmp_path: Path
) -> None:
    servers, settings = stack
    amqp = await aio_pika.connect_robust(f"{settings.amqp}?reconnect_interval=0.5")
    await declare_all(amqp)
    channel = await amqp.channel()
    queue = await channel.declare_queue(
        "scheduler-chaos", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(COMMANDS_EXCHANGE, catalog.entry_for(ExpirePlan).routing_key)
    collector = Collector()
    await collector.consume(queue)
    async with private_database(settings) as private:
        env = component_env(private, HISHO_RELAY_POLL_INTERVAL="0.1")
        running = Components(env, tmp_path)
        db = await asyncpg.connect(private.database_dsn)
        engine = create_engine(private)
        try:
            running.start("relay")
            running.start("scheduler")
            start = datetime.now(UTC) + timedelta(seconds=LEAD_TIME)
            await schedule_many(
                engine,
                [start + timedelta(seconds=SPREAD * n / TIMERS) for n in range(TIMERS)],
                GROUP,
            )
            await _until(db, _FIRED, TIMERS // 10, "a tenth of the timers to fire")
            await asyncio.to_thread(servers.stop_service, "rabbitmq")
            fired_at_stop = await db.fetchval(_FIRED)
            assert fired_at_stop < TIMERS, "every timer fired before the broker was down"
            await _until(db, _FIRED, fired_at_stop + TIMERS // 20, "timers firing with no broker")
            unpublished = await db.fetchval(_UNPUBLISHED)
            await asyncio.to_thread(servers.start_service, "rabbitmq")

            async def all_arrived() -> bool:
                return len(collector.ids()) >= TIMERS

            await eventually(all_arrived, timeout=120, what="every fired command to arrive")
            outcomes = await db.fetch(TIMER_OUTCOMES, GROUP)
        finally:
            codes = running.stop_all()
            await engine.dispose()
            await db.close()
            with contextlib.suppress(Exception):  # the broker may be the thing that failed
                await asyncio.wait_for(queue.delete(if_unused=False, if_empty=False), 10)
            await amqp.close()
    assert unpublished > 0, "the outage met no fired command still unpublished"
    assert len(outcomes) == TIMERS
    assert all(row["fired_at"] is not None for row in outcomes)
    assert sorted({row["rows"] for row in outcomes}) == [1]  # each timer's command once
    assert collector.ids() == {str(row["command_id"]) for row in outcomes}
    assert codes == {"relay": 0, "scheduler": 0}, codes


async def _until(db: asyncpg.Connection, query: str, at_least: int, what: str) -> None:
    async def reached() -> bool:
        return bool(await db.fetchval(query) >= at_least)

    await eventually(reached, timeout=60, what=what)
