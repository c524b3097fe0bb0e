"""The command processor: every command type in, decided in acceptance order per aggregate.

An ordered consumer of the framework (`infra.consumers`): the commands of one target
aggregate (a command's first field) reach one partition and are decided one after another,
in the order the ingress accepted them; different aggregates run in parallel, and two
processors never race on one aggregate. Each command becomes, in ONE transaction, the
aggregates' new state, the inbox row, the events in the outbox (caused by the command, in its
correlation, by its actor, in its trace) and the command's status:

- `processed`, with the event ids;
- `rejected`, with an RFC 9457 problem, when the domain refuses (`DomainError`; the commit
  may refuse too, `aggregate-id-taken`), or when a system-only command comes from anyone
  but hisho itself (403 `command-system-only`): committed with the inbox row, so a
  redelivery does not decide again;
- `failed`, with the parking reason, when the framework parks it (an invalid body, a bug,
  transient errors outlasting the retries: `consumers.parked_commands`); the later commands
  of its aggregate are held behind it until it is re-driven.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consumers import (
    approval_handlers,
    command_handlers,
    notification_handlers,
    workflow_handlers,
)
from consumers.command_handlers import Decision
from consumers.parked_commands import record_parked
from domain.errors import FORBIDDEN, DomainError
from events import Command, Envelope, InvalidMessageError, Message, catalog
from events.envelope import body_sha256
from infra.consumers import Consumer, Ordered
from infra.db.command_status import CommandState, record_status
from infra.message_context import MessageContext
from infra.topology import COMMAND_PROCESSOR

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence

    from infra.clock import Clock
    from infra.db.repositories import Aggregates
    from infra.db.uow import UnitOfWork
    from infra.people import PersonDirectory

# 1. Queues: `hisho.command_processor.p0…p15`, fed through `hisho.command_processor.partitioned`
#    from every command type of the catalog on `hisho.commands` (parking: `hisho.dead`).
PARTITIONS = 16
HANDLERS = {
    **command_handlers.HANDLERS,
    **approval_handlers.HANDLERS,
    **workflow_handlers.HANDLERS,
    **notification_handlers.HANDLERS,
}
PROBLEM_BASE = "https://hisho.dev/problems/"


# 2. Application logic, testable without a broker.
async def decide(command: Message, aggregates: Aggregates, ctx: Decision) -> None:
    """Apply `command` through its handler; raises `DomainError` to reject it.

    A system-only command (the catalog says which) is hisho's own: from anyone else, refused.
    """
    handler = HANDLERS.get(type(command)) if isinstance(command, Command) else None
    if handler is None:
        raise InvalidMessageError(type(command).__name__, "type", "not a command hisho handles")
    if catalog.entry_for(command).system_only and not ctx.actor.is_system:
        raise DomainError(
            "command-system-only",
            f"{type(command).__name__} is sent by hisho's own components only",
            status=FORBIDDEN,
        )
    await handler(command, aggregates, ctx)


def problem_for(error: DomainError) -> dict[str, Any]:
    """The RFC 9457 problem body of a rejected command (422 or 409: the error's `status`)."""
    return {
        "type": PROBLEM_BASE + error.code,
        "title": error.code.replace("-", " ").capitalize(),
        "status": error.status,
        "detail": error.reason,
        "code": error.code,
    }


async def handle_command(
    envelope: Envelope[Message], uow: UnitOfWork, *, clock: Clock, people: PersonDirectory
) -> None:
    """Decide; the state, events and `processed` status commit with the inbox row."""
    ctx = Decision(at=clock(), actor=envelope.actor, people=people)
    await decide(envelope.data, uow.aggregates, ctx)
    event_ids = await uow.save_aggregates(MessageContext.caused_by(envelope))
    _record(uow, envelope, CommandState.PROCESSED, event_ids=event_ids)


async def record_rejected(envelope: Envelope[Message], uow: UnitOfWork, error: DomainError) -> None:
    """The refusal, committed with the inbox row by the framework."""
    _record(uow, envelope, CommandState.REJECTED, problem=problem_for(error))


# 3. The declaration: the framework derives queues, router, retries, parking and order.
CONSUMER = Consumer(
    name=COMMAND_PROCESSOR,
    handlers=dict.fromkeys(HANDLERS, handle_command),
    ordered=Ordered(partitions=PARTITIONS),
    on_reject=record_rejected,
    on_park=record_parked,
    command="processor",
)


def _record(
    uow: UnitOfWork,
    envelope: Envelope[Message],
    state: CommandState,
    *,
    event_ids: Sequence[uuid.UUID] = (),
    problem: dict[str, Any] | None = None,
) -> None:
    record_status(
        uow,
        envelope.id,
        type=envelope.type,
        status=state,
        result_event_ids=event_ids,
        problem=problem,
        correlation_id=envelope.correlation_id,
        actor=envelope.actor,
        body_sha256=body_sha256(envelope.type, envelope.data),
    )
