"""What travels from a message to the messages it causes: correlation, causation, actor, trace."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.telemetry import current_traceparent

if TYPE_CHECKING:
    from events import Actor, Envelope, Message


@dataclass(frozen=True, kw_only=True)
class MessageContext:
    """The causal metadata every envelope written in one unit of work carries."""

    correlation_id: uuid.UUID
    actor: Actor
    causation_id: uuid.UUID | None = None
    traceparent: str | None = None  # None: the current span's, when the envelope is built

    @classmethod
    def start(cls, actor: Actor, *, correlation_id: uuid.UUID | None = None) -> MessageContext:
        """Begin a new correlation (a message nobody else caused)."""
        return cls(correlation_id=correlation_id or uuid.uuid4(), actor=actor)

    @classmethod
    def caused_by(
        cls, envelope: Envelope[Message], *, actor: Actor | None = None
    ) -> MessageContext:
        """Continue `envelope`'s correlation: it is the cause; the trace is the current span's.

        Outside any span the trace falls back to `envelope`'s own, so it is never cut.
        """
        return cls(
            correlation_id=envelope.correlation_id,
            causation_id=envelope.id,
            actor=actor or envelope.actor,
            traceparent=current_traceparent() or envelope.traceparent,
        )

    def resolved_traceparent(self) -> str | None:
        """The traceparent to write: the given one, else the current span's, else None."""
        return self.traceparent or current_traceparent()
