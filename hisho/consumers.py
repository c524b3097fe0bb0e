"""Every consumer of the system, registered once (a new consumer is one line here).

`declare_all` declares their queues with one `declare_topology`; `hisho run <name>` (and so
`hisho up`) runs each with `run`, on the process's `App`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumers import (
    approval,
    command_processor,
    notification,
    notification_delivery,
    workflow,
)
from infra.consumers import ConsumerRegistry
from infra.consumers.effects import PgEffects
from infra.consumers.held import PgHeldMessages
from infra.consumers.serve import ConsumerResources, run_consumer
from infra.db.group_commit import GroupCommit
from infra.db.group_load import GroupLoad
from infra.db.people import SqlPeople
from infra.db.pg_uow import PgUnitOfWork
from infra.notifications.channels import channels_for
from infra.topology import declare_topology

if TYPE_CHECKING:
    import asyncio

    from aio_pika.abc import AbstractConnection

    from infra.app import App
    from infra.consumers import Consumer

CONSUMERS = ConsumerRegistry(
    (
        command_processor.CONSUMER,
        approval.CONSUMER,
        workflow.CONSUMER,
        notification.CONSUMER,
        notification_delivery.CONSUMER,
    )
)


async def declare_all(connection: AbstractConnection) -> None:
    """Declare the exchanges and every registered consumer's queues (idempotent)."""
    await declare_topology(connection, CONSUMERS.queue_specs())


def resources(app: App) -> ConsumerResources:
    """What every consumer runs with, from the process's `App`.

    PostgreSQL units (group commit and group load shared by the process's units), the
    held-message store, the process's publisher, and what handlers ask for by name (the
    clock, the effects store, the people directory, the notification channels).
    """
    group, loads = GroupCommit(), GroupLoad()
    return ConsumerResources(
        amqp_url=app.settings.amqp,
        connection=app.amqp.connected,
        publisher=app.publisher,
        unit=lambda: PgUnitOfWork(app.engine, clock=app.clock, group=group, loads=loads),
        held=PgHeldMessages(app.engine),
        deps={
            "clock": app.clock,
            "effects": PgEffects(app.engine),
            "people": SqlPeople(app.engine, clock=app.clock),
            "channels": channels_for(app.settings),
        },
    )


async def run(consumer: Consumer, app: App, stop: asyncio.Event) -> None:
    """Run one registered consumer in this process until `stop` is set.

    Its own queues are declared first (the same `declare_topology`, idempotent), so a
    consumer started before `hisho topology` or `hisho up` still finds them.
    """
    await declare_topology(await app.amqp.connected(), [consumer.queue_spec()])
    await run_consumer(consumer, resources(app), stop)
