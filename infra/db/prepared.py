"""Outbox rows as parallel arrays: many rows in one statement through `unnest`.

Through SQLAlchemy each outbox row was one statement (and round trip), costing more CPU to
build than to run. `PreparedOutbox` keeps the envelopes of a unit of work; `take_rows()`
gives their rows, which become the 14 arrays `outbox_rows_sql` reads, in the order they were
added, so one statement (`infra.db.command_unit`) writes all of them.

asyncpg's connection carries SQLAlchemy's JSON codecs: a JSONB parameter takes JSON text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from events import catalog
from infra.db.outbox import ENVELOPE_COLUMNS, EnvelopeOutbox
from infra.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

if TYPE_CHECKING:
    import uuid

    from events import Envelope, Message
    from infra.clock import Clock

# What a unit of work writes: the envelope (its position is the relay's) and the address.
OUTBOX_COLUMNS = (
    *(column for column in ENVELOPE_COLUMNS if column != "position"),
    "exchange",
    "routing_key",
)
_TYPES = (
    "uuid", "text", "int", "timestamptz", "text", "uuid", "bigint",
    "uuid", "uuid", "jsonb", "text", "jsonb", "text", "text",
)  # fmt: skip


def outbox_rows_sql(first: int = 1) -> str:
    """A SELECT of outbox rows (`OUTBOX_COLUMNS`) from 14 arrays numbered from `first`, in order.

    Only numbered placeholders and fixed names are formatted in.
    """
    arrays = ", ".join(f"${first + n}::{kind}[]" for n, kind in enumerate(_TYPES))
    names = ", ".join(OUTBOX_COLUMNS)
    return f"SELECT {names} FROM unnest({arrays}) WITH ORDINALITY AS r({names}, n) ORDER BY n"  # noqa: S608


class PreparedOutbox(EnvelopeOutbox):
    """The processor's outbox (`infra.db.uow.Outbox`): envelopes kept for `flush()`."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self._pending: list[Envelope[Message]] = []  # added since the last flush

    async def add(self, envelope: Envelope[Message]) -> uuid.UUID:
        """Keep an already built envelope for the commit; return its id."""
        self.envelopes.append(envelope)
        self._pending.append(envelope)
        return envelope.id

    def take_rows(self) -> list[tuple[Any, ...]]:
        """The rows not taken yet, in the order they were added (`outbox_params` each)."""
        rows, self._pending = list(map(outbox_params, self._pending)), []
        return rows


def outbox_params(envelope: Envelope[Message]) -> tuple[Any, ...]:
    """One outbox row for an envelope: the row `outbox_values` describes."""
    entry = catalog.entry(envelope.type)
    return (
        envelope.id,
        envelope.type,
        envelope.version,
        envelope.occurred_at,
        envelope.aggregate_type,
        envelope.aggregate_id,
        envelope.aggregate_version,
        envelope.correlation_id,
        envelope.causation_id,
        envelope.actor.model_dump_json(),
        envelope.traceparent,
        envelope.data.model_dump_json(),
        EVENTS_EXCHANGE if entry.kind == "event" else COMMANDS_EXCHANGE,
        entry.routing_key,
    )
