"""The command processor: commands in; state, inbox, outbox and status out, in one transaction.

Each command becomes, in ONE PostgreSQL transaction, the aggregates' new state, an inbox
row (consumer `command_processor`, message id = command id), the events in the outbox (caused
by the command, in its correlation, by its actor, in its trace) and the command's status
(`processed` with the event ids, or `rejected` with a problem). That transaction is a single
statement (infra.db.command_unit): the reads before it are optimistic, the statement checks
them.

- A redelivered command finds its inbox row (at once, or when its commit meets it):
  acknowledged, nothing changes.
- Two processors racing on one aggregate (or on one redelivered command): the loser's
  statement finds a row moved on or taken (`ConcurrencyError`), writes nothing, and the
  runtime retries the command.
- A `DomainError` is an answer, not a failure: `rejected` + RFC 9457 problem, committed with
  the inbox row (a redelivery does not decide again), and the message is acknowledged. The
  commit itself may refuse with one (`aggregate-id-taken`: a new aggregate's id is another
  type's); nothing of the decision was written, and the rejection is committed instead.
- An undecodable or invalid message is parked with the reason (infra.consumer_runtime), and
  so is a command that keeps failing; either way its status becomes `failed` with the reason
  (consumers.parked_commands).
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitQueue, RabbitRouter
from opentelemetry import trace

from consumers import command_handlers, workflow_handlers
from consumers.parked_commands import record_parked
from domain.errors import DomainError
from events import Command, Envelope, InvalidMessageError, Message
from events.envelope import body_sha256
from infra.clock import Clock, utc_now
from infra.consumer_runtime import (
    RuntimePolicy,
    decode_envelope,
    is_transient,
    runtime_middleware,
)
from infra.db.command_status import CommandState
from infra.db.command_unit import SqlAggregateUnitOfWork
from infra.db.engine import GENERIC_PLANS, create_engine
from infra.db.group_commit import GroupCommit
from infra.db.group_load import GroupLoad
from infra.db.inbox import AlreadyAppliedError
from infra.db.repositories import ConcurrencyError
from infra.db.uow import UnitOfWork
from infra.message_context import MessageContext
from infra.readiness import notify_ready
from infra.telemetry import context_from_traceparent, tracer_provider
from infra.topology import (
    COMMAND_PROCESSOR,
    COMMAND_QUEUE,
    command_processor_queues,
    declare_topology,
)

if TYPE_CHECKING:
    import asyncio
    import uuid
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from infra.db.repositories import Aggregates
    from infra.settings import Settings

# 1. Queue and bindings: `hisho.command_processor`, bound to every command type of the catalog
#    on `hisho.commands` (declared by infra.topology; parking via `hisho.dead`).
QUEUES = command_processor_queues()
BINDINGS = QUEUES.bindings
PREFETCH = 100
# Connections, all kept open: at most this many commands are being handled at once, the
# others wait for one (no overflow: an overflow connection is a new PostgreSQL backend per
# burst, closed again on return, plus asyncpg re-preparing every statement on it). Under
# load, the more commands in flight, the larger the groups that commit together.
POOL_SIZE = 32
SHUTDOWN_GRACE = 8.0  # seconds in-flight commands get after SIGTERM (`hisho run` allows 10)
PROBLEM_BASE = "https://hisho.dev/problems/"

# Codes naming input the command cannot mean (422); every other rule broken is a state
# conflict (409): wrong status, already exists, duplicate vote, ...
_UNPROCESSABLE_CODES = frozenset(
    {
        "plan-nothing-to-edit",
        "plan-has-no-steps",
        "plan-duplicate-step",
        "plan-not-an-approver",
        "workflow-unknown-task",
        "workflow-tasks-unknown",
    }
)

HANDLERS = {**command_handlers.HANDLERS, **workflow_handlers.HANDLERS}

log = structlog.get_logger("hisho.command_processor")
_tracer = trace.get_tracer("hisho.command_processor")


class CommandUnitOfWork(UnitOfWork, Protocol):
    """A unit of work with repositories (`SqlAggregateUnitOfWork`, or the unit tests' fake)."""

    @property
    def aggregates(self) -> Aggregates:
        """The repositories, in this unit's transaction."""
        ...


class Outcome(StrEnum):
    """What handling one command delivery did."""

    PROCESSED = "processed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


# 2. Application logic, testable without a broker.
async def handle_command(
    envelope: Envelope[Message], uow: CommandUnitOfWork, *, clock: Clock = utc_now
) -> Outcome:
    """Decide one command and commit everything it changes at once."""
    parent = context_from_traceparent(envelope.traceparent)
    with _tracer.start_as_current_span(
        f"process {envelope.type}", context=parent, kind=trace.SpanKind.CONSUMER
    ):
        async with uow:
            if not await uow.inbox.claim(COMMAND_PROCESSOR, envelope.id):
                return Outcome.DUPLICATE  # a redelivery we already answered
            rejection = await _decide_and_record(envelope, uow, clock())
            refused: DomainError | None = None
            try:
                await uow.commit()  # state + inbox + outbox + status: one transaction
            except AlreadyAppliedError:
                return Outcome.DUPLICATE  # a copy was applied first (the claim was optimistic)
            except DomainError as error:  # found by writing: a new id another aggregate holds
                rejection = refused = error
        if refused is not None and not await _commit_rejection(envelope, uow, refused):
            return Outcome.DUPLICATE
    if rejection is None:
        return Outcome.PROCESSED
    log.info("command rejected", command_id=str(envelope.id), code=rejection.code)
    return Outcome.REJECTED


async def _decide_and_record(
    envelope: Envelope[Message], uow: CommandUnitOfWork, at: datetime
) -> DomainError | None:
    """Decide and record the outcome for the commit; the domain's refusal, if it refused.

    A rejection is committed too (with the inbox row): the command is decided once.
    """
    try:
        await decide(envelope.data, uow.aggregates, at)
    except DomainError as error:
        await _record(uow, envelope, CommandState.REJECTED, problem=problem_for(error))
        return error
    event_ids = await uow.aggregates.save(uow.outbox, MessageContext.caused_by(envelope))
    await _record(uow, envelope, CommandState.PROCESSED, event_ids=event_ids)
    return None


async def _commit_rejection(
    envelope: Envelope[Message], uow: CommandUnitOfWork, error: DomainError
) -> bool:
    """Commit the rejection the first commit refused with (nothing of that was written).

    False if a copy of the command was applied meanwhile.
    """
    async with uow:
        if not await uow.inbox.claim(COMMAND_PROCESSOR, envelope.id):
            return False
        await _record(uow, envelope, CommandState.REJECTED, problem=problem_for(error))
        try:
            await uow.commit()  # inbox + status only
        except AlreadyAppliedError:
            return False
    return True


async def decide(command: Message, aggregates: Aggregates, at: datetime) -> None:
    """Apply `command` through its handler; raises `DomainError` to reject it."""
    handler = HANDLERS.get(type(command)) if isinstance(command, Command) else None
    if handler is None:
        raise InvalidMessageError(type(command).__name__, "type", "not a command hisho handles")
    await handler(command, aggregates, at)


def problem_for(error: DomainError) -> dict[str, Any]:
    """The RFC 9457 problem body of a rejected command."""
    status = 422 if error.code in _UNPROCESSABLE_CODES or error.code.endswith("-not-found") else 409
    return {
        "type": PROBLEM_BASE + error.code,
        "title": error.code.replace("-", " ").capitalize(),
        "status": status,
        "detail": error.reason,
        "code": error.code,
    }


async def _record(
    uow: CommandUnitOfWork,
    envelope: Envelope[Message],
    state: CommandState,
    *,
    event_ids: Sequence[uuid.UUID] = (),
    problem: dict[str, Any] | None = None,
) -> None:
    await uow.command_status.record(
        envelope.id,
        type=envelope.type,
        status=state,
        result_event_ids=event_ids,
        problem=problem,
        correlation_id=envelope.correlation_id,
        actor=envelope.actor,
        body_sha256=body_sha256(envelope.type, envelope.data),
    )


def is_retryable(error: BaseException) -> bool:
    """Version conflicts and transient infrastructure errors are worth another attempt."""
    return isinstance(error, ConcurrencyError) or is_transient(error)


RUNTIME = RuntimePolicy(queues=QUEUES, transient=is_retryable)


# 3. The router: the subscriber only adapts a delivery to `handle_command`.
def command_router(
    uow_factory: Callable[[], CommandUnitOfWork],
    *,
    clock: Clock = utc_now,
    policy: RuntimePolicy = RUNTIME,
    prefetch: int = PREFETCH,
) -> RabbitRouter:
    """A router consuming `policy`'s queue (the command queue); a fresh unit of work per attempt.

    A command the runtime parks is marked `failed` first (`consumers.parked_commands`).
    """
    recording = replace(policy, on_park=partial(record_parked, uow_factory))
    router = RabbitRouter(middlewares=[runtime_middleware(recording)])

    @router.subscriber(
        RabbitQueue(policy.queues.queue, declare=False),
        channel=Channel(prefetch_count=prefetch),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=decode_envelope,
    )
    async def on_command(envelope: Envelope[Message]) -> None:
        """Adapt a delivery: decoded by the runtime, decided by `handle_command`."""
        await handle_command(envelope, uow_factory(), clock=clock)

    return router


def command_broker(amqp_url: str, router: RabbitRouter) -> RabbitBroker:
    """A broker for `router`: quiet, no argument casting, a bounded graceful stop.

    structlog speaks for us; the runtime's decoder already built the envelope.
    """
    broker = RabbitBroker(amqp_url, logger=None, apply_types=False, graceful_timeout=SHUTDOWN_GRACE)
    broker.include_router(router)
    return broker


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Run one command processor until `stop` is set; competing processors may run too."""
    tracer_provider("hisho-processor")
    # No pre-ping: it costs a round trip per command; a connection that died is invalidated
    # by its first error, which the runtime retries on a fresh one.
    # Generic plans: PostgreSQL otherwise re-plans the commit statement (six CTEs over unnest
    # arrays) on every execution, which cost more than executing it.
    engine = create_engine(
        settings,
        pool_size=POOL_SIZE,
        max_overflow=0,
        pool_pre_ping=False,
        connect_args={"server_settings": GENERIC_PLANS},
    )
    group = GroupCommit()  # commands ready together commit in one statement
    loads = GroupLoad()  # and read their aggregates with one
    broker = command_broker(
        settings.amqp,
        command_router(lambda: SqlAggregateUnitOfWork(engine, group=group, loads=loads)),
    )
    try:
        await declare_topology(await broker.connect())
        await broker.start()
        notify_ready("processor")
        log.info("processor consuming", queue=COMMAND_QUEUE, prefetch=PREFETCH)
        await stop.wait()
    finally:
        await broker.stop()  # stops consuming, waits for in-flight commands (graceful)
        await engine.dispose()
