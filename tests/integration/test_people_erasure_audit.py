"""Erasing a person deletes their row and leaves the relayed, hash-chained log valid.

Run in a private database with a real relay, so every event is positioned and chained.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg

from events import Actor
from hisho.bootstrap import run_on_app
from infra.db.engine import create_engine
from infra.db.people import SqlPeople
from infra.eventlog.verify import verify_chain
from infra.message_context import MessageContext
from infra.people import NewPerson, PersonChanges
from producers import relay
from tests.relay_harness import eventually, log_state, private_database

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from infra.settings import Settings

PID = "user:https://issuer.example/realms/team/ada"
EMAIL = "ada@analytical.example"


async def _relay_everything(settings: Settings, connection: asyncpg.Connection) -> None:
    """Run the relay until every outbox row is published."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_on_app(relay.run, "relay", settings, stop))

    async def published() -> bool:
        rows, _, done, _ = await log_state(connection)
        return rows == done

    try:
        await eventually(published, timeout=20, what="every person event to be published")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_an_erased_person_is_gone_and_the_log_still_verifies(
    settings: Settings,
    amqp: AbstractRobustConnection,  # declares the topology the relay publishes to
) -> None:
    async with private_database(settings) as private:
        engine = create_engine(private, pool_size=2)
        connection = await asyncpg.connect(private.database_dsn)
        try:
            store = SqlPeople(engine)
            context = MessageContext.start(Actor.of("key:00000000000000aa", admin=True))
            await store.register(
                NewPerson(principal_id=PID, display_name="Ada", email=EMAIL), context=context
            )
            await store.update(PID, PersonChanges(display_name="Ada L."), context=context)
            await _relay_everything(private, connection)
            await store.erase(PID, context=context)
            await _relay_everything(private, connection)

            assert await connection.fetchval("SELECT count(*) FROM people") == 0
            assert await store.get(PID) is None
            types = await connection.fetch("SELECT type FROM outbox ORDER BY position")
            assert [row["type"] for row in types] == [
                "PersonRegistered",
                "PersonUpdated",
                "PersonErased",
            ]
            dumped = await connection.fetchval("SELECT string_agg(data::text, ' ') FROM outbox")
            assert PID in dumped
            assert EMAIL not in dumped
            assert "Ada" not in dumped.replace(PID, "")
            report = await verify_chain(connection)
            assert (report.ok, report.checked) == (True, 3), report
        finally:
            await connection.close()
            await engine.dispose()
