"""The notification consumer on the real broker and PostgreSQL: the four scenarios (as with
fakes in `tests/unit/test_notification_consumer.py`), and an approval request through the real
command processor: `NotificationRequested` for a registered person, `NotificationDropped`
with the reason for an erased one, and a command sent twice still one notification."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from consumers import notification
from domain.project import Project
from events import Actor
from events.notification import (
    NotificationChannel,
    NotificationDropped,
    NotificationRequested,
    SendNotification,
)
from infra.db.command_status import CommandState
from infra.db.outbox import command_envelope
from infra.db.people import SqlPeople
from infra.db.pg_uow import PgUnitOfWork
from infra.message_context import MessageContext
from infra.people import NewPerson
from tests.consumer_harness import running
from tests.consumer_scenarios import (
    LiveConsumerDriver,
    poison_is_parked_later_ones_flow_and_a_redrive_applies_it,
    redelivery_has_one_effect,
    transient_failure_is_retried_to_one_effect,
    with_failures,
)
from tests.consumer_support import Failures
from tests.notification_support import AT, POLICY, envelope, sample
from tests.processor_support import (
    Deliveries,
    command_status,
    counting_units,
    events_caused_by,
    eventually,
    processor_running,
    publish_command,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message
    from infra.settings import Settings

CHANNELS = tuple(NotificationChannel)  # an approval request's: in-app, e-mail, chat
ASKED = ["SendNotification"] * len(CHANNELS)
REGISTRAR = MessageContext.start(Actor.system("tests"))


def principal(name: str) -> str:
    """A principal of this test alone (the directory is shared by the tests' database)."""
    return f"key:{name}-{uuid.uuid4().hex[:8]}"


def requested(approver: str | None = None) -> Envelope[Message]:
    event = sample("ApprovalRequested", approver=approver or principal("ana"))
    return envelope(event, Actor.system("approval"))


@asynccontextmanager
async def live_driver(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> AsyncIterator[LiveConsumerDriver]:
    """The notification consumer under its own name, with the real people directory."""
    failures = Failures()
    name = f"notification_it_{uuid.uuid4().hex[:8]}"
    consumer = replace(with_failures(notification.CONSUMER, failures), name=name)
    deps = {"people": SqlPeople(engine)}
    async with running(consumer, engine, amqp, settings.amqp, deps=deps) as live:
        yield LiveConsumerDriver(live, failures)


async def test_redelivery_has_one_effect(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with live_driver(settings, engine, amqp) as driver:
        await redelivery_has_one_effect(driver, requested())


async def test_transient_failure_is_retried_to_one_effect(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with live_driver(settings, engine, amqp) as driver:
        await transient_failure_is_retried_to_one_effect(driver, requested(), ASKED)


async def test_poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    async with live_driver(settings, engine, amqp) as driver:
        await poison_is_parked_later_ones_flow_and_a_redrive_applies_it(
            driver, requested(), requested(), ASKED
        )


async def test_a_completed_workflow_tells_the_projects_people_read_from_postgresql(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    owner, mia, lee, project_id = (
        principal("owen"),
        principal("mia"),
        principal("lee"),
        uuid.uuid4(),
    )
    by = Actor.of(owner)
    async with PgUnitOfWork(engine, context=REGISTRAR) as unit:
        project = Project.create(project_id=project_id, name="P", policy=POLICY, by=by, at=AT)
        project.add_member(mia, by=by, at=AT)
        project.add_member(lee, by=by, at=AT)
        unit.aggregates.projects.add(project)
        await unit.commit()
    completed = sample("WorkflowCompleted", project_id=project_id)
    message = envelope(completed, Actor.of(lee))  # lee completed it: not told
    async with live_driver(settings, engine, amqp) as driver:
        await driver.deliver(message)
    sent = [c.data for c in await events_caused_by(engine, message.id)]
    assert [(c.recipient, c.channel) for c in sent if isinstance(c, SendNotification)] == [
        (owner, NotificationChannel.IN_APP),
        (owner, NotificationChannel.EMAIL),
        (mia, NotificationChannel.IN_APP),
        (mia, NotificationChannel.EMAIL),
    ]


async def test_an_approval_request_is_requested_for_a_person_and_dropped_for_an_erased_one(
    settings: Settings, engine: AsyncEngine, amqp: AbstractRobustConnection
) -> None:
    ana, bo = principal("ana"), principal("bo")
    people = SqlPeople(engine)
    await people.register(
        NewPerson(principal_id=ana, display_name="Ana", email="ana@example.org"), context=REGISTRAR
    )
    await people.register(NewPerson(principal_id=bo, display_name="Bo"), context=REGISTRAR)
    await people.erase(bo, context=REGISTRAR)
    asked = [requested(ana), requested(bo)]
    async with live_driver(settings, engine, amqp) as driver:
        for message in asked:
            await driver.deliver(message)
    commands = [c for message in asked for c in await events_caused_by(engine, message.id)]
    assert [c.type for c in commands] == ["SendNotification"] * 6
    first = commands[0].data
    assert isinstance(first, SendNotification)
    again = command_envelope(first, context=MessageContext.caused_by(asked[0]))  # a second send
    async with processor_running(settings, engine, counting_units(engine, Deliveries())):
        for command in [*commands, again]:
            await publish_command(amqp, command)

        async def outcomes() -> list[Envelope[Message]]:
            found = [e for c in commands for e in await events_caused_by(engine, c.id)]
            assert len(found) == len(commands), f"{len(found)} of {len(commands)} decided"
            return found

        events = await eventually(outcomes)
        await eventually(lambda: _decided(engine, again))
    accepted = [e.data for e in events if isinstance(e.data, NotificationRequested)]
    assert {(a.recipient, a.channel) for a in accepted} == {(ana, channel) for channel in CHANNELS}
    dropped = [e.data for e in events if isinstance(e.data, NotificationDropped)]
    assert {(d.recipient, d.channel) for d in dropped} == {(bo, channel) for channel in CHANNELS}
    assert all(d.reason == f"{bo} is not in the people directory" for d in dropped)
    assert await events_caused_by(engine, again.id) == [], "the same dedup key: sent once"


async def _decided(engine: AsyncEngine, command: Envelope[Message]) -> None:
    status = await command_status(engine, command.id)
    assert status is not None, "the second send is not decided yet"
    assert status.status is CommandState.PROCESSED, status
