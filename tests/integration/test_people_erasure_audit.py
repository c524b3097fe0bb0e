"""Erasing a person deletes their row and leaves the relayed, hash-chained log valid.

Run in a private database with a real relay, so every event is positioned and chained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from events import Actor
from infra.db.engine import create_engine
from infra.db.people import SqlPeople
from infra.eventlog.verify import verify_chain
from infra.message_context import MessageContext
from infra.people import NewPerson, PersonChanges
from tests.relay_harness import private_database, relay_until_published

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from infra.settings import Settings

PID = "user:https://issuer.example/realms/team/ada"
EMAIL = "ada@analytical.example"


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
            await relay_until_published(private, connection)
            await store.erase(PID, context=context)
            await relay_until_published(private, connection)

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
