"""Outbox writing: build full envelopes and insert them as outbox rows; rows back to envelopes.

A row addressed to `hisho.events` is a domain event; one addressed to `hisho.commands` is a
command a process manager sends. Both are written in the caller's transaction, so they are
published (by the relay) if and only if that transaction commits.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from events import Command, DomainEvent, Envelope, Message, catalog
from infra.clock import Clock, utc_now
from infra.db.tables import outbox
from infra.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

if TYPE_CHECKING:
    from collections.abc import Mapping

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncSession

    from infra.message_context import MessageContext

ENVELOPE_COLUMNS = (
    "id",
    "type",
    "version",
    "occurred_at",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "position",
    "correlation_id",
    "causation_id",
    "actor",
    "traceparent",
    "data",
)


def event_envelope(
    event: DomainEvent,
    *,
    aggregate_id: uuid.UUID,
    aggregate_version: int,
    context: MessageContext,
    clock: Clock = utc_now,
) -> Envelope[Message]:
    """Wrap a domain event in its envelope: new id, now, type/version/aggregate from the catalog."""
    entry = catalog.entry_for(event)
    if entry.kind != "event":
        raise TypeError(f"{entry.type} is a command; use add_command")
    return _envelope(event, context, clock, (entry.aggregate, aggregate_id, aggregate_version))


def command_envelope(
    command: Command, *, context: MessageContext, clock: Clock = utc_now
) -> Envelope[Message]:
    """Wrap a command in its envelope (no aggregate: the command processor decides)."""
    entry = catalog.entry_for(command)
    if entry.kind != "command":
        raise TypeError(f"{entry.type} is an event; use add_event")
    return _envelope(command, context, clock, (None, None, None))


def _envelope(
    message: Message,
    context: MessageContext,
    clock: Clock,
    aggregate: tuple[str | None, uuid.UUID | None, int | None],
) -> Envelope[Message]:
    entry = catalog.entry_for(message)
    aggregate_type, aggregate_id, aggregate_version = aggregate
    return Envelope[Message](
        id=uuid.uuid4(),
        type=entry.type,
        version=entry.version,
        occurred_at=clock(),
        correlation_id=context.correlation_id,
        causation_id=context.causation_id,
        actor=context.actor,
        traceparent=context.resolved_traceparent(),
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
        data=message,
    )


def outbox_values(envelope: Envelope[Message]) -> dict[str, Any]:
    """The outbox row for an envelope, addressed by the catalog (exchange and routing key)."""
    entry = catalog.entry(envelope.type)
    values = envelope.model_dump(mode="json", exclude={"position"})
    values.update(
        id=envelope.id,
        occurred_at=envelope.occurred_at,
        aggregate_id=envelope.aggregate_id,
        correlation_id=envelope.correlation_id,
        causation_id=envelope.causation_id,
        exchange=EVENTS_EXCHANGE if entry.kind == "event" else COMMANDS_EXCHANGE,
        routing_key=entry.routing_key,
    )
    return values


def envelope_from_row(row: Mapping[Any, Any] | asyncpg.Record) -> Envelope[Message]:
    """Turn an outbox row (SQLAlchemy or asyncpg) back into a typed, upcast `Envelope`."""
    columns = dict(row)
    doc = {name: columns[name] for name in ENVELOPE_COLUMNS if name in columns}
    for name in ("actor", "data"):
        if isinstance(doc.get(name), str):  # raw asyncpg without a JSON codec
            doc[name] = json.loads(doc[name])
    return catalog.decode(doc)


class EnvelopeOutbox:
    """Builds full envelopes for events and commands; subclasses decide how `add` stores them."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self.envelopes: list[Envelope[Message]] = []

    async def add_event(
        self,
        event: DomainEvent,
        *,
        aggregate_id: uuid.UUID,
        aggregate_version: int,
        context: MessageContext,
    ) -> uuid.UUID:
        """Record a domain event for `hisho.events`; return its envelope id."""
        envelope = event_envelope(
            event,
            aggregate_id=aggregate_id,
            aggregate_version=aggregate_version,
            context=context,
            clock=self._clock,
        )
        return await self.add(envelope)

    async def add_command(self, command: Command, *, context: MessageContext) -> uuid.UUID:
        """Record a command for `hisho.commands` (process managers); return its envelope id."""
        return await self.add(command_envelope(command, context=context, clock=self._clock))

    async def add(self, envelope: Envelope[Message]) -> uuid.UUID:
        """Store an already built envelope; return its id."""
        raise NotImplementedError


class SqlOutbox(EnvelopeOutbox):
    """Appends envelopes to the outbox inside the unit of work's transaction."""

    def __init__(self, session: AsyncSession, clock: Clock = utc_now) -> None:
        super().__init__(clock)
        self._session = session

    async def add(self, envelope: Envelope[Message]) -> uuid.UUID:
        """Insert an already built envelope (replays and tests); return its id."""
        await self._session.execute(insert(outbox).values(**outbox_values(envelope)))
        self.envelopes.append(envelope)
        return envelope.id
