"""Parking on the real broker and database: a parked command says `failed` at its status URL.

Whatever parks it (a body the catalog refuses, a bug, transient errors outlasting the
in-process retries), the command's status row becomes `failed` with the parking reason; a
re-drive that succeeds replaces it; a parked copy of a command already answered leaves the
answer.
"""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, cast

from consumers.command_processor import CONSUMER
from events import catalog
from events.project import ApprovalPolicy, CreateProject
from infra.consumers.redrive import redrive
from infra.consumers.runtime import PARKED_CONSUMER_HEADER, PARKED_REASON_HEADER, RETRIES_HEADER
from infra.db.command_status import CommandState
from infra.db.group_commit import GroupCommit
from infra.db.group_load import GroupLoad
from infra.db.inbox import PgInbox
from infra.redis_store import RedisIngressStore
from infra.topology import COMMAND_PROCESSOR, DEAD_EXCHANGE
from producers.ingress.status import StatusReader
from tests.command_scenarios import command_envelope
from tests.processor_support import (
    CountingUnitOfWork,
    Deliveries,
    command_status,
    eventually,
    headers_of,
    processor_running,
    publish,
    publish_command,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from events import Envelope, Message
    from infra.db.command_status import CommandStatus
    from infra.settings import Settings

POLICY = ApprovalPolicy(approvers=("key:alice",), required_approvals=1)
Failures = dict[uuid.UUID, tuple[Exception, int]]


class FailingUnitOfWork(CountingUnitOfWork):
    """The real unit of work whose inbox claim raises `failures[id]` for chosen messages.

    `failures` maps a message id to (error, times); times < 0 fails every time. `attempts`
    counts claims per message.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        failures: Failures,
        attempts: dict[uuid.UUID, int],
        group: GroupCommit,
        loads: GroupLoad,
    ) -> None:
        super().__init__(engine, Deliveries(), group=group, loads=loads)
        self._failures = failures
        self._attempts = attempts

    @property
    def inbox(self) -> PgInbox:
        inner, failures, attempts = super().inbox, self._failures, self._attempts

        class Failing(PgInbox):
            async def claim(self, consumer: str, message_id: uuid.UUID) -> bool:
                attempts[message_id] = attempts.get(message_id, 0) + 1
                error, times = failures.get(message_id, (None, 0))
                if error is not None and times != 0:
                    failures[message_id] = (error, times - 1)
                    raise error
                return await inner.claim(consumer, message_id)

        return Failing()


@asynccontextmanager
async def processor(
    settings: Settings,
    engine: AsyncEngine,
    failures: Failures | None = None,
    attempts: dict[uuid.UUID, int] | None = None,
) -> AsyncIterator[None]:
    """The command processor in this process, its claims failing as `failures` says."""
    group, loads = GroupCommit(), GroupLoad()
    chosen, counted = failures or {}, {} if attempts is None else attempts

    def units() -> FailingUnitOfWork:
        return FailingUnitOfWork(engine, chosen, counted, group, loads)

    async with processor_running(settings, engine, units):
        yield


@asynccontextmanager
async def tap(
    amqp: AbstractRobustConnection, exchange: str, keys: tuple[str, ...]
) -> AsyncIterator[AbstractQueue]:
    """A private queue seeing what is published to `exchange` with `keys`."""
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    for key in keys:
        await queue.bind(exchange, key)
    try:
        yield queue
    finally:
        await channel.close()


async def copy_of(queue: AbstractQueue, message_id: str) -> AbstractIncomingMessage:
    """The next copy of `message_id` in `queue` (others' messages are skipped)."""

    async def find() -> AbstractIncomingMessage:
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            if message.message_id == message_id:
                return message
        raise AssertionError(f"no copy of {message_id} yet")

    return await eventually(find)


async def final_status(engine: AsyncEngine, command_id: uuid.UUID, state: str) -> CommandStatus:
    async def reached() -> CommandStatus:
        status = await command_status(engine, command_id)
        assert status is not None, "no status row yet"
        assert status.status == state, status
        return status

    return await eventually(reached)


def project_command() -> Envelope[Message]:
    return command_envelope(CreateProject(project_id=uuid.uuid4(), name="P", policy=POLICY))


def with_extra_field(envelope: Envelope[Message]) -> bytes:
    doc = json.loads(catalog.encode(envelope))
    doc["data"]["colour"] = "red"
    return json.dumps(doc).encode()


async def test_an_invalid_command_parked_is_failed_with_the_reason(
    settings: Settings, amqp: AbstractRobustConnection, engine: AsyncEngine
) -> None:
    envelope = project_command()
    async with (
        tap(amqp, DEAD_EXCHANGE, (COMMAND_PROCESSOR,)) as parked,
        processor(settings, engine),
    ):
        await publish(
            amqp, with_extra_field(envelope), routing_key=envelope.type, message_id=str(envelope.id)
        )
        copy = await copy_of(parked, str(envelope.id))
        status = await final_status(engine, envelope.id, CommandState.FAILED)
    reason = headers_of(copy)[PARKED_REASON_HEADER]
    assert reason.startswith("invalid message: CreateProject.colour: Extra inputs")
    assert status.type == "CreateProject"
    assert status.problem is not None
    assert status.problem["code"] == "command-parked"
    assert status.problem["detail"] == reason
    assert status.problem["error"] == "InvalidMessageError"
    assert status.accepted_at is not None
    assert status.result_event_ids == ()
    # The status URL says so: the ingress's reader shows `failed` with the reason.
    store = RedisIngressStore.from_url(settings.redis, timeout=1.0)
    try:
        view = await StatusReader(engine, store).status(envelope.id)
    finally:
        await store.aclose()
    assert view.status == "failed"
    assert view.problem == status.problem
    assert view.accepted_at is not None


async def test_a_command_parked_by_a_bug_is_failed_and_a_redrive_processes_it(
    settings: Settings, amqp: AbstractRobustConnection, engine: AsyncEngine
) -> None:
    envelope = project_command()
    failures: Failures = {envelope.id: (cast("Exception", RuntimeError("bug")), 1)}
    async with (
        tap(amqp, DEAD_EXCHANGE, (COMMAND_PROCESSOR,)) as parked,
        processor(settings, engine, failures),
    ):
        await publish_command(amqp, envelope)
        copy = await copy_of(parked, str(envelope.id))
        failed = await final_status(engine, envelope.id, CommandState.FAILED)
        assert failed.problem is not None
        assert failed.problem["detail"] == "unexpected error: RuntimeError: bug"
        assert failed.body_sha256 is not None  # the ingress can still compare a reused key
        assert headers_of(copy)[PARKED_CONSUMER_HEADER] == COMMAND_PROCESSOR
        # An operator re-drives the parked message; the bug is gone now.
        assert await redrive(amqp, CONSUMER, message_id=str(envelope.id)) == 1
        processed = await final_status(engine, envelope.id, CommandState.PROCESSED)
    assert processed.problem is None
    assert len(processed.result_event_ids) == 1
    assert processed.accepted_at == failed.accepted_at


async def test_a_parked_copy_of_an_answered_command_leaves_its_answer(
    settings: Settings, amqp: AbstractRobustConnection, engine: AsyncEngine
) -> None:
    envelope = project_command()
    async with (
        tap(amqp, DEAD_EXCHANGE, (COMMAND_PROCESSOR,)) as parked,
        processor(settings, engine),
    ):
        await publish_command(amqp, envelope)
        answered = await final_status(engine, envelope.id, CommandState.PROCESSED)
        await publish(
            amqp, with_extra_field(envelope), routing_key=envelope.type, message_id=str(envelope.id)
        )
        await copy_of(parked, str(envelope.id))  # parked only after its on_park ran
    after = await command_status(engine, envelope.id)
    assert after == answered


async def test_a_command_failing_every_time_is_retried_in_process_then_parked_failed(
    settings: Settings, amqp: AbstractRobustConnection, engine: AsyncEngine
) -> None:
    envelope = project_command()
    failures: Failures = {
        envelope.id: (cast("Exception", ConnectionResetError("database went away")), -1)
    }
    attempts: dict[uuid.UUID, int] = {}
    async with (
        tap(amqp, DEAD_EXCHANGE, (COMMAND_PROCESSOR,)) as parked,
        processor(settings, engine, failures, attempts),
    ):
        await publish_command(amqp, envelope)
        copy = await copy_of(parked, str(envelope.id))
        status = await final_status(engine, envelope.id, CommandState.FAILED)
    # Ordered: no delay queue (a later command of the plan would overtake it); the in-process
    # attempts, once, then parked.
    assert attempts[envelope.id] == CONSUMER.attempts
    reason = "gave up after 5 attempts: ConnectionResetError: database went away"
    assert headers_of(copy)[PARKED_REASON_HEADER] == reason
    assert RETRIES_HEADER not in headers_of(copy)
    assert status.problem is not None
    assert status.problem["detail"] == reason
    assert status.problem["error"] == "ConnectionResetError"
