"""The people directory on a real PostgreSQL: each change and its event commit together.

The personal data stays in `people`; the outbox rows carry principal ids and field names only.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, text

from events import Actor
from infra.db.outbox import envelope_from_row
from infra.db.people import SqlPeople, person_aggregate_id
from infra.db.people_tables import people
from infra.db.tables import outbox
from infra.message_context import MessageContext
from infra.people import (
    NewPerson,
    NotificationPreferences,
    PersonChanges,
    PersonExistsError,
    PersonNotFoundError,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message

ADMIN = Actor.of("key:0123456789abcdef", admin=True)
EMAIL = "ada.lovelace@analytical.example"
WEBHOOK = "https://chat.example/hooks/T000/B000/secret-token"
NAME = "Ada Lovelace (the secret name)"


class BoomError(Exception):
    pass


def _pid() -> str:
    return f"user:https://issuer.example/{uuid.uuid4()}"


def _person(principal_id: str) -> NewPerson:
    return NewPerson(
        principal_id=principal_id,
        display_name=NAME,
        email=EMAIL,
        chat_webhook_url=WEBHOOK,
        preferences=NotificationPreferences(digest=True),
    )


def _context() -> MessageContext:
    return MessageContext.start(ADMIN)


async def _events(engine: AsyncEngine, principal_id: str) -> list[Envelope[Message]]:
    query = (
        select(outbox)
        .where(outbox.c.aggregate_id == person_aggregate_id(principal_id))
        .order_by(outbox.c.aggregate_version)
    )
    async with engine.connect() as conn:
        return [envelope_from_row(row._mapping) for row in await conn.execute(query)]


async def _row(engine: AsyncEngine, principal_id: str) -> Any:
    async with engine.connect() as conn:
        result = await conn.execute(select(people).where(people.c.principal_id == principal_id))
        return result.first()


async def test_registering_writes_the_row_and_its_event(engine: AsyncEngine) -> None:
    store, pid = SqlPeople(engine), _pid()
    context = _context()
    person = await store.register(_person(pid), context=context)
    assert (person.principal_id, person.email, person.chat_webhook_url) == (pid, EMAIL, WEBHOOK)
    assert person.preferences.digest is True
    assert await store.get(pid) == person
    row = await _row(engine, pid)
    assert (row.display_name, row.email, row.preferences["digest"]) == (NAME, EMAIL, True)
    [event] = await _events(engine, pid)
    assert event.type == "PersonRegistered"
    assert event.data.model_dump() == {"principal_id": pid}
    assert (event.aggregate_type, event.aggregate_version) == ("person", 1)
    assert event.actor == ADMIN
    assert event.correlation_id == context.correlation_id


async def test_a_failure_before_commit_leaves_neither_row_nor_event(engine: AsyncEngine) -> None:
    calls = 0

    def clock() -> datetime:  # the row takes the first reading; the envelope would the second
        nonlocal calls
        calls += 1
        if calls > 1:
            raise BoomError
        return datetime.now(UTC)

    pid = _pid()
    with pytest.raises(BoomError):
        await SqlPeople(engine, clock=clock).register(_person(pid), context=_context())
    assert await _row(engine, pid) is None
    assert await _events(engine, pid) == []


async def test_a_second_registration_is_refused_and_records_nothing(engine: AsyncEngine) -> None:
    store, pid = SqlPeople(engine), _pid()
    await store.register(_person(pid), context=_context())
    other = NewPerson(principal_id=pid, display_name="Someone else")
    with pytest.raises(PersonExistsError):
        await store.register(other, context=_context())
    assert (await _row(engine, pid)).display_name == NAME
    assert [event.type for event in await _events(engine, pid)] == ["PersonRegistered"]


async def test_an_update_records_only_the_names_of_the_fields_that_changed(
    engine: AsyncEngine,
) -> None:
    store, pid = SqlPeople(engine), _pid()
    await store.register(_person(pid), context=_context())
    changes = PersonChanges.model_validate(
        {"email": "ada@new.example", "chat_webhook_url": None, "display_name": NAME}
    )
    person = await store.update(pid, changes, context=_context())
    assert (person.email, person.chat_webhook_url, person.display_name) == (
        "ada@new.example",
        None,
        NAME,
    )
    assert person.updated_at >= person.created_at
    unchanged = await store.update(pid, changes, context=_context())  # the same values again
    assert unchanged == person
    events = await _events(engine, pid)
    assert [event.type for event in events] == ["PersonRegistered", "PersonUpdated"]
    assert events[1].data.model_dump() == {
        "principal_id": pid,
        "changed": ("email", "chat_webhook_url"),
    }


async def test_repeated_and_concurrent_updates_of_one_person_take_distinct_versions(
    engine: AsyncEngine,
) -> None:
    store, pid = SqlPeople(engine), _pid()
    await store.register(_person(pid), context=_context())
    names = [f"name {n}" for n in range(12)]
    await asyncio.gather(
        *(store.update(pid, PersonChanges(display_name=name), context=_context()) for name in names)
    )
    events = await _events(engine, pid)
    assert [event.aggregate_version for event in events] == list(range(1, 14))
    assert (await _row(engine, pid)).display_name in names


async def test_updating_or_erasing_an_unknown_person_is_not_found(engine: AsyncEngine) -> None:
    store, pid = SqlPeople(engine), _pid()
    with pytest.raises(PersonNotFoundError):
        await store.update(pid, PersonChanges(display_name="x"), context=_context())
    with pytest.raises(PersonNotFoundError):
        await store.erase(pid, context=_context())
    assert await store.get(pid) is None
    assert await _events(engine, pid) == []


async def test_erasing_deletes_the_row_and_a_new_registration_carries_on(
    engine: AsyncEngine,
) -> None:
    store, pid = SqlPeople(engine), _pid()
    await store.register(_person(pid), context=_context())
    await store.erase(pid, context=_context())
    assert await _row(engine, pid) is None
    assert await store.get(pid) is None
    await store.register(NewPerson(principal_id=pid, display_name="Back"), context=_context())
    events = await _events(engine, pid)
    assert [(e.type, e.aggregate_version) for e in events] == [
        ("PersonRegistered", 1),
        ("PersonErased", 2),
        ("PersonRegistered", 3),
    ]


async def test_no_outbox_row_holds_a_contact_point_or_a_display_name(
    engine: AsyncEngine,
) -> None:
    store, pid = SqlPeople(engine), _pid()
    await store.register(_person(pid), context=_context())
    change = {"display_name": "Ada K.", "email": "k@x.example", "chat_webhook_url": WEBHOOK + "2"}
    await store.update(pid, PersonChanges.model_validate(change), context=_context())
    await store.erase(pid, context=_context())
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT data::text || actor::text FROM outbox WHERE aggregate_id = :id"),
                {"id": person_aggregate_id(pid)},
            )
        ).scalars()
        texts = list(stored)
    assert len(texts) == 3
    for secret in (EMAIL, WEBHOOK, NAME, "Ada K.", "k@x.example", "chat.example", "@"):
        assert not [row for row in texts if secret in row], secret


async def test_pages_follow_the_principal_id_order(engine: AsyncEngine) -> None:
    store, prefix = SqlPeople(engine), f"persona:{uuid.uuid4()}"
    ids = [f"{prefix}-{n}" for n in range(5)]
    for pid in reversed(ids):
        await store.register(NewPerson(principal_id=pid, display_name=pid), context=_context())
    seen: list[str] = []
    after: str | None = f"{prefix}-"  # just before the first of them
    while after is not None and after.startswith(prefix):
        page, after = await store.page(after=after, limit=2)
        seen += [person.principal_id for person in page if person.principal_id.startswith(prefix)]
    assert seen == ids


async def test_erasing_a_person_deletes_their_in_app_notifications_too(
    engine: AsyncEngine,
) -> None:
    store, principal_id, other = SqlPeople(engine), _pid(), _pid()
    for person in (principal_id, other):
        await store.register(_person(person), context=_context())
    insert = text(
        "INSERT INTO notifications (notification_id, recipient, channel, priority, subject,"
        " body, status, created_at) VALUES (:id, :to, 'in_app', 'normal', 'Plan approved',"
        " 'Your plan was approved', 'delivered', now())"
    )
    async with engine.begin() as connection:
        for person in (principal_id, other):
            await connection.execute(insert, {"id": uuid.uuid4(), "to": person})
    await store.erase(principal_id, context=_context())
    count = text(
        "SELECT recipient, count(*) FROM notifications WHERE recipient = ANY(:who) GROUP BY 1"
    )
    async with engine.connect() as connection:
        left: dict[str, int] = dict(
            (await connection.execute(count, {"who": [principal_id, other]})).all()
        )
    assert left == {other: 1}  # theirs went with them; the other person's stayed
