"""A process manager's command written through the outbox reaches `hisho.commands` via the relay."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from events import Actor, catalog
from events.project import ApprovalPolicy, CreateProject
from hisho.bootstrap import run_on_app
from infra.db.engine import create_engine
from infra.db.pg_uow import PgUnitOfWork
from infra.message_context import MessageContext
from infra.topology import COMMANDS_EXCHANGE
from producers import relay
from tests.relay_harness import private_database

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

    from infra.settings import Settings


async def test_a_command_in_the_outbox_is_published_to_the_commands_exchange_once_committed(
    settings: Settings, amqp: AbstractRobustConnection
) -> None:
    command = CreateProject(
        project_id=uuid.uuid4(),
        name="from a process manager",
        policy=ApprovalPolicy(approvers=("key:a",), required_approvals=1),
    )
    channel = await amqp.channel()
    tap = await channel.declare_queue(f"relay-cmd-{uuid.uuid4().hex[:12]}", exclusive=True)
    await tap.bind(COMMANDS_EXCHANGE, catalog.entry_for(command).routing_key)
    async with private_database(settings) as private:
        engine = create_engine(private, pool_size=1)
        uow = PgUnitOfWork(engine)
        async with uow:
            await uow.outbox.add_command(command, context=MessageContext.start(Actor.system()))
            [envelope] = uow.outbox.envelopes
            await uow.commit()
        await engine.dispose()
        stop = asyncio.Event()
        running = asyncio.create_task(
            run_on_app(
                relay.run,
                "relay",
                private.model_copy(update={"relay_poll_interval": 0.05}),
                stop,
            )
        )
        try:
            async with tap.iterator(timeout=20) as messages:
                async for message in messages:
                    await message.ack()
                    if message.message_id == str(envelope.id):
                        break
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)
    decoded = catalog.decode(message.body)
    assert decoded.id == envelope.id
    assert decoded.data == command
    assert message.routing_key == "CreateProject"
    assert message.headers["x-hisho-kind"] == "command"
    assert message.headers["x-hisho-project"] == str(command.project_id)
    await channel.close()
