"""The envelope every command and event travels in (DESIGN.md "Messages")."""

from __future__ import annotations

import hashlib
from typing import Generic, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SerializeAsAny

from events.base import Actor, Message

M_co = TypeVar("M_co", bound=Message, covariant=True)


class Envelope(BaseModel, Generic[M_co]):
    """Metadata around one typed payload; the AMQP body is this, as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    type: str
    version: int = Field(ge=1)
    occurred_at: AwareDatetime
    aggregate_type: str | None = None
    aggregate_id: UUID | None = None
    aggregate_version: int | None = Field(default=None, ge=1)
    position: int | None = Field(default=None, ge=1)
    correlation_id: UUID
    causation_id: UUID | None = None
    actor: Actor
    traceparent: str | None = None
    data: SerializeAsAny[M_co]


def body_sha256(command_type: str, data: Message) -> str:
    """A SHA-256 of a command's type and canonically serialised body (hex).

    The ingress compares it for a reused `Idempotency-Key`; the processor records it with
    the command's status, so the comparison still works when the ingress's Redis is down.
    """
    return hashlib.sha256(f"{command_type}\n{data.model_dump_json()}".encode()).hexdigest()
