"""The parked-message console on REAL parked messages: the demo consumer parks on the real
broker and database, the console (infra.parked) lists, shows, re-drives and discards them.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest

from events import Actor, catalog
from infra.consumers.redrive import redrive
from infra.consumers.runtime import PARKED_ERROR_HEADER, PARKED_REASON_HEADER
from infra.db.engine import create_engine
from infra.eventlog.verify import verify_chain
from infra.message_context import MessageContext
from infra.parked import NotParkedError, ParkedInputError, ParkedNotFoundError
from tests.parked_support import console, parked_messages, until
from tests.relay_harness import private_database, relay_until_published

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from infra.settings import Settings

OPERATOR = "key:00000000000000ad"


async def test_a_parked_message_is_recorded_when_the_framework_parks_it(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    async with (
        parked_messages(engine, amqp, settings.amqp) as parked,
        console(engine, settings.amqp) as parking,
    ):
        (poison,) = parked.poison
        record = await parking.show(str(poison.id))
        assert (record.consumer, record.state) == (parked.name, "parked")
        assert record.routing_key == "task.retried"
        assert record.message_type == "TaskRetried"
        assert record.error_type == "ValueError"
        assert record.reason == f"unexpected error: ValueError: poison {poison.id}"
        assert record.body == catalog.encode(poison)
        assert record.headers is not None
        assert record.headers[PARKED_REASON_HEADER] == record.reason
        assert record.headers[PARKED_ERROR_HEADER] == "ValueError"
        assert record.redrive_routing_key == f"hisho.{parked.name}"


async def test_the_console_lists_filters_pages_and_groups_by_error_type(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    async with (
        parked_messages(engine, amqp, settings.amqp, poison=2, flaky=1) as parked,
        console(engine, settings.amqp) as parking,
    ):
        mine = await parking.filter(consumer=parked.name)
        page = await parking.list(mine)
        assert {r.message_id for r in page.items} == {
            str(e.id) for e in (*parked.poison, *parked.flaky)
        }
        assert [(g.error_type, g.count, g.consumers) for g in page.groups] == [
            ("ValueError", 2, (parked.name,)),
            ("ConnectionError", 1, (parked.name,)),
        ]
        (flaky,) = [r for r in page.items if r.error_type == "ConnectionError"]
        assert flaky.reason.startswith("gave up after 1 delayed retries: ConnectionError")
        errors = await parking.filter(consumer=parked.name, error_type="ValueError")
        assert len((await parking.list(errors)).items) == 2
        assert (
            await parking.list(await parking.filter(consumer=parked.name, older_than="1h"))
        ).items == []
        younger = await parking.filter(consumer=parked.name, younger_than="1h")
        assert len((await parking.list(younger)).items) == 3
        first = await parking.list(mine, limit=2)
        assert first.next_cursor is not None
        second = await parking.list(mine, cursor=first.next_cursor, limit=2)
        assert second.next_cursor is None
        seen = [r.message_id for r in (*first.items, *second.items)]
        assert sorted(seen) == sorted(r.message_id for r in page.items)


async def test_a_redrive_applies_the_message_once_and_the_record_says_redriven(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    async with (
        parked_messages(engine, amqp, settings.amqp) as parked,
        console(engine, settings.amqp) as parking,
    ):
        (poison,) = parked.poison
        parked.failures.poison.clear()  # the bug is fixed
        done = await parking.redrive(str(poison.id), by=OPERATOR)
        assert (done.sent, done.already_applied) == (1, 0)

        async def applied() -> bool:
            return await parked.effects_of(poison) == 1

        await until(applied, "the re-driven message's effect")
        record = await parking.show(str(poison.id))
        assert (record.state, record.resolved_by) == ("redriven", OPERATOR)
        assert await parked.copies() == 0  # the parking copy is gone: nothing to send twice
        assert await redrive(amqp, parked.live.consumer) == 0
        with pytest.raises(NotParkedError, match="redriven"):
            await parking.redrive(str(poison.id), by=OPERATOR)
        await asyncio.sleep(0.3)
        assert await parked.effects_of(poison) == 1


async def test_a_bulk_redrive_sends_what_the_filter_selects_at_the_rate_asked(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(round(seconds, 6))

    async with (
        parked_messages(engine, amqp, settings.amqp, poison=3, flaky=1) as parked,
        console(engine, settings.amqp, sleep=sleep, monotonic=lambda: 0.0) as parking,
    ):
        which = await parking.filter(consumer=parked.name, error_type="ValueError")
        dry = await parking.redrive_all(which, by=OPERATOR, rate=20, dry_run=True)
        assert {r.message_id for r in dry.selected} == {str(e.id) for e in parked.poison}
        assert (dry.sent, waits, await parked.copies()) == (0, [], 4)  # nothing changed
        parked.failures.poison.clear()
        done = await parking.redrive_all(which, by=OPERATOR, rate=20)
        assert (done.sent, done.already_applied) == (3, 0)
        assert waits == [0.0, 0.05, 0.1]  # the n-th send waits until n / rate seconds

        async def applied() -> bool:
            return all([await parked.effects_of(e) == 1 for e in parked.poison])

        await until(applied, "the three re-driven messages")
        left = await parking.list(await parking.filter(consumer=parked.name))
        assert [r.message_id for r in left.items] == [str(parked.flaky[0].id)]
        assert await parked.copies() == 1  # the ConnectionError one, still parked
        with pytest.raises(ParkedInputError, match="rate"):
            await parking.redrive_all(which, by=OPERATOR, rate=0)


async def test_a_message_applied_already_is_not_sent_again_but_marked(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    async with (
        parked_messages(engine, amqp, settings.amqp) as parked,
        console(engine, settings.amqp) as parking,
    ):
        (poison,) = parked.poison
        parked.failures.poison.clear()
        assert await redrive(amqp, parked.live.consumer) == 1  # the framework's own re-drive

        async def applied() -> bool:
            return await parked.effects_of(poison) == 1

        await until(applied, "the message re-driven by the framework")
        which = await parking.filter(consumer=parked.name)
        done = await parking.redrive_all(which, by=OPERATOR)
        assert (done.sent, done.already_applied) == (0, 1)
        assert (await parking.show(str(poison.id))).state == "redriven"


async def test_bad_input_is_refused_and_changes_nothing(
    engine: AsyncEngine, amqp: AbstractRobustConnection, settings: Settings
) -> None:
    async with (
        parked_messages(engine, amqp, settings.amqp) as parked,
        console(engine, settings.amqp) as parking,
    ):
        (poison,) = parked.poison
        with pytest.raises(ParkedNotFoundError):
            await parking.redrive(str(uuid.uuid4()), by=OPERATOR)
        with pytest.raises(ParkedInputError, match="older-than"):
            await parking.filter(older_than="x")
        with pytest.raises(ParkedInputError, match="no consumer"):
            await parking.filter(consumer="nobody_at_all")
        with pytest.raises(ParkedInputError, match="state"):
            await parking.filter(state="gone")
        with pytest.raises(ParkedInputError, match="cursor"):
            await parking.list(await parking.filter(), cursor="not-a-cursor")
        with pytest.raises(ParkedNotFoundError):
            await parking.show(str(poison.id), consumer="someone_else")
        record = await parking.show(str(poison.id))
        assert record.state == "parked"
        assert await parked.copies() == 1


async def test_a_discard_is_audited_in_the_log_without_the_body_and_the_chain_verifies(
    settings: Settings, amqp: AbstractRobustConnection
) -> None:
    async with private_database(settings) as private:
        engine = create_engine(private, pool_size=4)
        connection = await asyncpg.connect(private.database_dsn)
        try:
            async with (
                parked_messages(engine, amqp, settings.amqp, poison=2) as parked,
                console(engine, settings.amqp) as parking,
            ):
                gone, kept = parked.poison
                context = MessageContext.start(Actor.of(OPERATOR, admin=True))
                await parking.discard(str(gone.id), reason="obsolete test data", context=context)
                default = await parking.list(await parking.filter(consumer=parked.name))
                assert [r.message_id for r in default.items] == [str(kept.id)]
                discarded = await parking.show(str(gone.id))
                assert (discarded.state, discarded.resolved_by) == ("discarded", OPERATOR)
                assert await parked.copies() == 1
                with pytest.raises(NotParkedError):
                    await parking.discard(str(gone.id), reason="again", context=context)
            await relay_until_published(private, connection)
            rows = await connection.fetch("SELECT type, data, actor FROM outbox ORDER BY position")
            assert [row["type"] for row in rows] == ["ParkedMessageDiscarded"]
            data = rows[0]["data"]
            assert str(gone.id) in data
            assert parked.name in data
            assert "obsolete test data" in data
            assert "TaskRetried" not in data  # no body
            assert OPERATOR.split(":")[1] in rows[0]["actor"]
            report = await verify_chain(connection)
            assert (report.ok, report.checked) == (True, 1), report
        finally:
            await connection.close()
            await engine.dispose()
