"""A command the runtime parks says so at its status URL: `failed`, with the parking reason.

The framework calls `record_parked` (the processor's `on_park` hook) before it publishes the
parked copy and acknowledges the original, whatever the reason: a body the catalog refuses,
an unexpected error, transient errors outlasting the in-process attempts. The command's status
row becomes `failed` with an RFC 9457 problem naming the reason; `accepted_at` is kept (or
set, for a command with no row yet). The row is written like any outcome (one statement,
group commit), without an inbox row: a re-drive of the parked message is decided afresh, and
its `processed` or `rejected` replaces `failed`. A decided command is never marked `failed`
(a parked copy of a command already answered leaves its answer; `infra.db.command_status`).

The id is the body's `id` when the body is an envelope, else the AMQP `message_id` (the
ingress sets it to the command id); a message with neither is parked unrecorded. If the row
cannot be written, the framework does not park the message yet (the processor is ordered:
it has no delay queue, so the message goes back to its partition and comes again): no 202'd
command stays `accepted` because its failure was lost.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from events import Actor, ContractError, catalog
from events.envelope import body_sha256
from infra.db.command_status import CommandState, record_status

if TYPE_CHECKING:
    from infra.consumers import Parked
    from infra.consumers.runtime import Settlement
    from infra.db.uow import UnitOfWork

PROBLEM_BASE = "https://hisho.dev/problems/"
PARKED_CODE = "command-parked"
_MAX_TYPE = 200
log = structlog.get_logger("hisho.command_processor")


@dataclass(frozen=True)
class ParkedCommand:
    """What a parked message tells about the command it carries."""

    id: uuid.UUID
    type: str
    correlation_id: uuid.UUID | None = None
    actor: Actor | None = None
    body_sha256: str | None = None


def parked_command(
    body: bytes, message_id: str | None, routing_key: str | None
) -> ParkedCommand | None:
    """The command in a message about to be parked, as far as it can be read; None if no id."""
    try:
        envelope = catalog.decode(body)
    except ContractError:
        pass
    else:
        return ParkedCommand(
            envelope.id,
            envelope.type,
            envelope.correlation_id,
            envelope.actor,
            body_sha256(envelope.type, envelope.data),
        )
    doc = _document(body)
    command_id = _uuid(doc.get("id")) or _uuid(message_id)
    if command_id is None:
        return None
    named = doc.get("type")
    command_type = named if isinstance(named, str) and named else routing_key or "unknown"
    return ParkedCommand(command_id, command_type[:_MAX_TYPE])


def parked_problem(settlement: Settlement) -> dict[str, Any]:
    """The problem body of a parked command: why, and which error."""
    return {
        "type": PROBLEM_BASE + PARKED_CODE,
        "title": "Command parked",
        "status": 500,
        "detail": settlement.reason,
        "code": PARKED_CODE,
        "error": settlement.error,
        "consumer": settlement.consumer,
    }


async def record_parked(parked: Parked, uow: UnitOfWork) -> None:
    """Mark the command in a message about to be parked `failed` (the processor's `on_park`).

    The framework commits `uow` afterwards: the status row alone, no inbox row, so a
    re-drive decides afresh.
    """
    command = parked_command(parked.body, parked.message_id, parked.routing_key)
    if command is None:
        log.warning("parked message carries no command id", reason=parked.settlement.reason)
        return
    record_status(
        uow,
        command.id,
        type=command.type,
        status=CommandState.FAILED,
        problem=parked_problem(parked.settlement),
        correlation_id=command.correlation_id,
        actor=command.actor,
        body_sha256=command.body_sha256,
    )


def _document(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
