"""The people directory in PostgreSQL: each change and its event in ONE transaction.

A registration, an update or an erasure writes the `people` row (or deletes it) and appends
its event (`events.person`) to the outbox in the same transaction, so the log records a
change if and only if it happened. The events carry the principal id and field names only:
the personal data lives in this table alone, and erasing deletes the row and nothing else,
so the hash-chained log stays valid.

Person events form one aggregate per principal id: `aggregate_id` is `person_aggregate_id`
(a stable UUID of the id) and `aggregate_version` follows the person's last event in the
outbox. Each change first holds the person's row (the insert of a registration, or `FOR
UPDATE`), so concurrent changes of one person take their versions one after another, and a
person erased and registered again carries on from the versions already in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import TYPE_CHECKING, Any

from events.person import PersonErased, PersonRegistered, PersonUpdated
from infra.clock import Clock, utc_now
from infra.db.engine import driver_of
from infra.db.notification_tables import NOTIFICATIONS
from infra.db.outbox import event_envelope, outbox_row
from infra.db.tables import OUTBOX
from infra.people import (
    NewPerson,
    NotificationPreferences,
    Person,
    PersonExistsError,
    PersonNotFoundError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import DomainEvent
    from infra.message_context import MessageContext
    from infra.people import PersonChanges

# The namespace of `person_aggregate_id` (fixed forever: it keys the person's events).
PERSON_NAMESPACE = uuid.UUID("7b0c56f4-1f0e-5d4c-9a57-7065726f6e73")

_COLUMNS = (
    "principal_id, display_name, email, chat_webhook_url, preferences, created_at, updated_at"
)
_GET = f"SELECT {_COLUMNS} FROM people WHERE principal_id = $1"  # noqa: S608  (fixed names)
_LOCK = f"{_GET} FOR UPDATE"
_PAGE = f"SELECT {_COLUMNS} FROM people ORDER BY principal_id LIMIT $1"  # noqa: S608
_PAGE_AFTER = (
    f"SELECT {_COLUMNS} FROM people WHERE principal_id > $1"  # noqa: S608
    " ORDER BY principal_id LIMIT $2"
)
_INSERT = (
    f"INSERT INTO people ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $6)"  # noqa: S608
    f" ON CONFLICT (principal_id) DO NOTHING RETURNING {_COLUMNS}"
)
_UPDATE = (
    "UPDATE people SET display_name = $2, email = $3, chat_webhook_url = $4, preferences = $5,"  # noqa: S608
    f" updated_at = $6 WHERE principal_id = $1 RETURNING {_COLUMNS}"
)
_DELETE = "DELETE FROM people WHERE principal_id = $1"
# Their in-app notifications hold the texts sent to them: they go with the person.
_DELETE_NOTIFICATIONS = f"DELETE FROM {NOTIFICATIONS.name} WHERE recipient = $1"  # noqa: S608
_LAST_VERSION = (
    f"SELECT coalesce(max(aggregate_version), 0) FROM {OUTBOX.name}"  # noqa: S608
    " WHERE aggregate_id = $1"
)
_APPEND = OUTBOX.insert_sql(1)


def person_aggregate_id(principal_id: str) -> uuid.UUID:
    """The aggregate id of a person's events: the same for one principal id, always."""
    return uuid.uuid5(PERSON_NAMESPACE, principal_id)


def _person(row: asyncpg.Record) -> Person:
    preferences: Any = row["preferences"]
    if isinstance(preferences, str):  # JSON text (SQLAlchemy's codec on the connection)
        preferences = json.loads(preferences)
    return Person(
        principal_id=row["principal_id"],
        display_name=row["display_name"],
        email=row["email"],
        chat_webhook_url=row["chat_webhook_url"],
        preferences=NotificationPreferences.model_validate(preferences),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class SqlPeople:
    """The people directory (`infra.people.PersonDirectory`), with its writes.

    Every method raises the driver's exception (or `TimeoutError` after `timeout` seconds)
    when PostgreSQL cannot answer; nothing is written then.
    """

    def __init__(
        self, engine: AsyncEngine, *, clock: Clock = utc_now, timeout: float = 5.0
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._timeout = timeout

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with asyncio.timeout(self._timeout), self._engine.connect() as connection:
            driver = await driver_of(connection)
            async with driver.transaction():
                yield driver

    async def get(self, principal_id: str) -> Person | None:
        """The person with this principal id; None if unknown or erased."""
        async with self._transaction() as db:
            row = await db.fetchrow(_GET, principal_id)
        return None if row is None else _person(row)

    async def page(self, *, after: str | None, limit: int) -> tuple[list[Person], str | None]:
        """Up to `limit` people ordered by principal id after `after`; the next page's `after`."""
        async with self._transaction() as db:
            rows = await (
                db.fetch(_PAGE, limit + 1)
                if after is None
                else db.fetch(_PAGE_AFTER, after, limit + 1)
            )
        people = [_person(row) for row in rows[:limit]]
        return people, people[-1].principal_id if len(rows) > limit else None

    async def register(self, person: NewPerson, *, context: MessageContext) -> Person:
        """Add a person and record `PersonRegistered`; `PersonExistsError` if the id is taken."""
        now = self._clock()
        async with self._transaction() as db:
            row = await db.fetchrow(
                _INSERT,
                person.principal_id,
                person.display_name,
                person.email,
                person.chat_webhook_url,
                person.preferences.model_dump_json(),
                now,
            )
            if row is None:
                raise PersonExistsError(person.principal_id)
            event = PersonRegistered(principal_id=person.principal_id)
            await self._append(db, person.principal_id, event, context)
        return _person(row)

    async def update(
        self, principal_id: str, changes: PersonChanges, *, context: MessageContext
    ) -> Person:
        """Apply `changes` and record `PersonUpdated` naming the fields whose value changed.

        Changes that change nothing write nothing. `PersonNotFoundError` for an unknown id.
        """
        async with self._transaction() as db:
            row = await db.fetchrow(_LOCK, principal_id)
            if row is None:
                raise PersonNotFoundError(principal_id)
            stored = _person(row)
            details, changed = changes.applied_to(stored.details)
            if not changed:
                return stored
            updated = await db.fetchrow(
                _UPDATE,
                principal_id,
                details.display_name,
                details.email,
                details.chat_webhook_url,
                details.preferences.model_dump_json(),
                self._clock(),
            )
            if updated is None:  # pragma: no cover  (the row is locked since it was read)
                raise PersonNotFoundError(principal_id)
            event = PersonUpdated(principal_id=principal_id, changed=changed)
            await self._append(db, principal_id, event, context)
        return _person(updated)

    async def erase(self, principal_id: str, *, context: MessageContext) -> None:
        """Delete the person's row and record `PersonErased`; `PersonNotFoundError` if unknown.

        The row and their in-app notifications go; the log keeps its events (principal id
        and field names only).
        """
        async with self._transaction() as db:
            if await db.fetchrow(_LOCK, principal_id) is None:
                raise PersonNotFoundError(principal_id)
            await db.execute(_DELETE, principal_id)
            await db.execute(_DELETE_NOTIFICATIONS, principal_id)
            await self._append(db, principal_id, PersonErased(principal_id=principal_id), context)

    async def _append(
        self,
        db: asyncpg.Connection,
        principal_id: str,
        event: DomainEvent,
        context: MessageContext,
    ) -> None:
        aggregate_id = person_aggregate_id(principal_id)
        version = int(await db.fetchval(_LAST_VERSION, aggregate_id)) + 1
        envelope = event_envelope(
            event,
            aggregate_id=aggregate_id,
            aggregate_version=version,
            context=context,
            clock=self._clock,
        )
        await db.execute(_APPEND, *OUTBOX.arrays([outbox_row(envelope)]))
