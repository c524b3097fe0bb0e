"""The relay against real PostgreSQL and RabbitMQ, each test in a private database."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import asyncpg
import pytest

from hisho.bootstrap import run_on_app
from infra.eventlog.chain import GENESIS, link_hash
from infra.eventlog.verify import use_json_codecs
from infra.partitions import partition_slot
from producers import relay
from producers.relay.store import LostLeadershipError, RelayStore
from tests.relay_consumers import (
    Collector,
    assert_aggregate_order,
    assert_complete_without_gaps,
    log_positions,
    partitioned,
    plain_queue,
    remove_partitioned,
)
from tests.relay_harness import (
    eventually,
    insert_probes,
    log_state,
    private_database,
    probes,
    unique_routing_key,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractChannel, AbstractRobustConnection

    from infra.settings import Settings


@pytest.fixture
async def log_settings(settings: Settings) -> AsyncIterator[Settings]:
    async with private_database(settings) as private:
        yield private.model_copy(update={"relay_poll_interval": 0.05})


@pytest.fixture
async def db(log_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(log_settings.database_dsn)
    yield connection
    await connection.close()


@pytest.fixture
async def channel(amqp: AbstractRobustConnection) -> AsyncIterator[AbstractChannel]:
    ch = await amqp.channel()
    yield ch
    await ch.close()


@asynccontextmanager
async def running_relay(settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_on_app(relay.run, "relay", settings, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def received(collector: Collector, count: int) -> None:
    async def enough() -> bool:
        return len(collector.ids()) >= count

    await eventually(enough, timeout=20, what=f"{count} distinct messages")


async def test_a_rolled_back_transaction_publishes_nothing(
    log_settings: Settings, db: asyncpg.Connection, channel: AbstractChannel
) -> None:
    key, collector = unique_routing_key(), Collector()
    await collector.consume(await plain_queue(channel, key))
    rolled_back, committed = probes(1, 2)
    async with running_relay(log_settings):
        transaction = db.transaction()
        await transaction.start()
        await insert_probes(db, key, [rolled_back])
        await transaction.rollback()
        await insert_probes(db, key, [committed])
        await received(collector, 1)
    assert collector.ids() == {str(committed.id)}
    assert await log_state(db) == (1, 1, 1, 1)


async def test_a_row_committed_late_is_not_skipped_and_gets_the_next_position(
    log_settings: Settings, db: asyncpg.Connection, channel: AbstractChannel
) -> None:
    key, collector = unique_routing_key(), Collector()
    await collector.consume(await plain_queue(channel, key))
    early, late = probes(2, 1)
    slow = await asyncpg.connect(log_settings.database_dsn)
    try:
        async with running_relay(log_settings):
            transaction = slow.transaction()
            await transaction.start()
            await insert_probes(slow, key, [early])  # takes the lower seq, commits last
            await insert_probes(db, key, [late])
            await received(collector, 1)
            await transaction.commit()
            await received(collector, 2)
    finally:
        await slow.close()
    seqs = {row["id"]: row["seq"] for row in await db.fetch("SELECT id, seq FROM outbox")}
    assert seqs[early.id] < seqs[late.id]
    assert await log_positions(db) == {str(late.id): 1, str(early.id): 2}
    assert_complete_without_gaps(collector.deliveries, await log_positions(db))


async def test_messages_carry_the_envelope_and_the_chained_canonical_body(
    log_settings: Settings, db: asyncpg.Connection, channel: AbstractChannel
) -> None:
    key = unique_routing_key()
    queue = await plain_queue(channel, key)
    rows = probes(2, 2)
    await insert_probes(db, key, rows)
    async with running_relay(log_settings):
        messages = []
        async with queue.iterator(timeout=20) as iterator:
            async for message in iterator:
                messages.append(message)
                await message.ack()
                if len(messages) == len(rows):
                    break
    stored = {r["position"]: r for r in await db.fetch("SELECT * FROM outbox")}
    prev = GENESIS
    for position, message in enumerate(messages, start=1):
        row = stored[position]
        body = json.loads(message.body)
        assert message.message_id == str(row["id"]) == body["id"]
        assert message.type == "RelayProbed"
        assert message.correlation_id == str(row["correlation_id"])
        assert message.content_type == "application/json"
        assert message.delivery_mode == 2  # persistent
        assert message.app_id == "hisho-relay"
        assert message.headers["position"] == body["position"] == position
        assert message.headers["traceparent"] == row["traceparent"]
        assert message.headers["partition_slot"] == partition_slot(str(row["aggregate_id"]))
        assert message.headers["x-hisho-kind"] == "event"
        assert "x-hisho-project" not in message.headers  # a probe has no project
        assert bytes(row["prev_hash"]) == prev
        assert link_hash(prev, message.body) == bytes(row["hash"])
        prev = bytes(row["hash"])


async def test_rows_positioned_before_a_crash_are_republished_unchanged(
    log_settings: Settings, db: asyncpg.Connection, channel: AbstractChannel
) -> None:
    key, collector = unique_routing_key(), Collector()
    await collector.consume(await plain_queue(channel, key))
    await insert_probes(db, key, probes(3, 2))
    crashed = await asyncpg.connect(log_settings.database_dsn)
    await use_json_codecs(crashed)
    claimed = await RelayStore(crashed).claim(4)  # phase one, then the "crash"
    await crashed.close()
    before = {r["id"]: (r["position"], r["hash"]) for r in await db.fetch("SELECT * FROM outbox")}
    async with running_relay(log_settings):
        await received(collector, 6)
    after = {r["id"]: (r["position"], r["hash"]) for r in await db.fetch("SELECT * FROM outbox")}
    assert [e.position for e in claimed] == [1, 2, 3, 4]
    assert {k: v for k, v in after.items() if k in before and before[k][0]} == {
        k: v for k, v in before.items() if v[0]
    }
    assert await log_state(db) == (6, 6, 6, 6)
    assert_complete_without_gaps(collector.deliveries, await log_positions(db))


async def test_a_partitioned_consumer_gets_each_aggregate_in_version_order(
    log_settings: Settings, db: asyncpg.Connection, channel: AbstractChannel
) -> None:
    key, collector = unique_routing_key(), Collector()
    spec, queues = await partitioned(channel, key, partitions=3)
    try:
        for queue in queues:
            await collector.consume(queue)
        rows = probes(30, 8)
        async with running_relay(log_settings):
            for start in range(0, len(rows), 30):  # one version of every aggregate per commit
                await insert_probes(db, key, rows[start : start + 30])
            await received(collector, len(rows))
        assert_aggregate_order(collector.deliveries)
        assert len({d.queue for d in collector.deliveries}) == 3
        assert_complete_without_gaps(collector.deliveries, await log_positions(db))
    finally:
        await remove_partitioned(channel, spec)


async def test_with_notify_on_the_relay_wakes_on_commit_rather_than_by_polling(
    log_settings: Settings, db: asyncpg.Connection, channel: AbstractChannel
) -> None:
    notifying = log_settings.model_copy(update={"relay_notify": True, "relay_poll_interval": 60})
    key, collector = unique_routing_key(), Collector()
    await collector.consume(await plain_queue(channel, key))
    trigger = "SELECT count(*) FROM pg_trigger WHERE tgname = 'outbox_notify'"
    async with running_relay(notifying):

        async def triggered() -> bool:
            return bool(await db.fetchval(trigger) == 1)

        await eventually(triggered, timeout=10, what="the NOTIFY trigger")
        await asyncio.sleep(0.2)  # let the relay go idle: only a notification can wake it now
        await insert_probes(db, key, probes(1, 1))
        await received(collector, 1)
    async with running_relay(log_settings):  # notify off again: the trigger goes away

        async def dropped() -> bool:
            return bool(await db.fetchval(trigger) == 0)

        await eventually(dropped, timeout=10, what="the trigger to be dropped")


async def test_a_claim_that_races_another_position_writer_assigns_nothing(
    log_settings: Settings, db: asyncpg.Connection
) -> None:
    rows = probes(3, 1)
    await insert_probes(db, unique_routing_key(), rows)
    stale = await asyncpg.connect(log_settings.database_dsn)
    await use_json_codecs(stale)
    try:
        transaction = db.transaction()
        await transaction.start()  # an intruder positions one row and holds its lock
        await db.execute("UPDATE outbox SET position = 99 WHERE id = $1", rows[1].id)
        claim = asyncio.create_task(RelayStore(stale).claim(10))

        async def claim_blocked() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )

        await eventually(claim_blocked, timeout=10, what="the claim to wait for the row lock")
        await transaction.commit()
        with pytest.raises(LostLeadershipError):
            await claim
    finally:
        await stale.close()
    positions = {r["id"]: r["position"] for r in await db.fetch("SELECT id, position FROM outbox")}
    assert positions == {rows[0].id: None, rows[1].id: 99, rows[2].id: None}
