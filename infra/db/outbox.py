"""Outbox writing: build full envelopes, keep them, turn them into outbox rows; rows back.

A row addressed to `hisho.events` is a domain event; one addressed to `hisho.commands` is a
command a process manager sends. Both are written in the caller's transaction, so they are
published (by the relay) if and only if that transaction commits.
"""

from __future__ import annotations

import json
import uuid
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from events import Command, DomainEvent, Envelope, Message, catalog
from infra.clock import Clock, utc_now
from infra.db.tables import OUTBOX
from infra.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

if TYPE_CHECKING:
    from collections.abc import Mapping

    import asyncpg

    from infra.message_context import MessageContext

# The envelope's fields that are outbox columns (readers select these). A unit of work writes
# those (without the relay's `position`), then the row's address.
ENVELOPE_COLUMNS = tuple(name for name in OUTBOX.names if name in Envelope.model_fields)
_FIELDS = tuple(name for name in OUTBOX.written if name in ENVELOPE_COLUMNS)
_ADDRESS = ("exchange", "routing_key", "kind", "project_id")
if OUTBOX.written != (*_FIELDS, *_ADDRESS):  # pragma: no cover  (a description edited wrongly)
    raise RuntimeError(f"outbox rows are the envelope's columns, then {_ADDRESS}")
_GET_FIELDS = attrgetter(*_FIELDS)
_JSON_FIELDS = tuple(n for n, name in enumerate(_FIELDS) if OUTBOX.column(name).type == "jsonb")


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


def outbox_row(envelope: Envelope[Message]) -> tuple[Any, ...]:
    """The outbox row of an envelope (`OUTBOX.written`), addressed by the catalog.

    Its `kind` is the catalog's; its `project_id` the payload's field of that name, if any.

    JSONB values are JSON text (asyncpg's connection carries SQLAlchemy's JSON codecs).
    """
    entry = catalog.entry(envelope.type)
    values = list(_GET_FIELDS(envelope))
    for n in _JSON_FIELDS:
        values[n] = values[n].model_dump_json()
    exchange = EVENTS_EXCHANGE if entry.kind == "event" else COMMANDS_EXCHANGE
    project_id = getattr(envelope.data, "project_id", None)
    return (*values, exchange, entry.routing_key, entry.kind, project_id)


def envelope_from_row(row: Mapping[Any, Any] | asyncpg.Record) -> Envelope[Message]:
    """Turn an outbox row (SQLAlchemy or asyncpg) back into a typed, upcast `Envelope`."""
    columns = dict(row)
    doc = {name: columns[name] for name in ENVELOPE_COLUMNS if name in columns}
    for name in ("actor", "data"):
        if isinstance(doc.get(name), str):  # raw asyncpg without a JSON codec
            doc[name] = json.loads(doc[name])
    return catalog.decode(doc)


class EnvelopeOutbox:
    """`infra.db.uow.Outbox`: builds full envelopes for events and commands and keeps them."""

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
        return self.add(envelope)

    async def add_command(self, command: Command, *, context: MessageContext) -> uuid.UUID:
        """Record a command for `hisho.commands` (process managers); return its envelope id."""
        return self.add(command_envelope(command, context=context, clock=self._clock))

    def add(self, envelope: Envelope[Message]) -> uuid.UUID:
        """Keep an already built envelope; return its id."""
        self.envelopes.append(envelope)
        return envelope.id


class PgOutbox(EnvelopeOutbox):
    """The outbox of `PgUnitOfWork`: envelopes kept until the commit takes their rows."""

    def __init__(self, clock: Clock = utc_now) -> None:
        super().__init__(clock)
        self._taken = 0  # envelopes whose rows the commit took

    def take_rows(self) -> list[tuple[Any, ...]]:
        """The rows (`outbox_row`) of the envelopes not taken yet, in the order they came."""
        pending, self._taken = self.envelopes[self._taken :], len(self.envelopes)
        return list(map(outbox_row, pending))
