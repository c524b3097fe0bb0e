"""The processor's outbox writes, on the unit of work's own asyncpg connection.

Through SQLAlchemy, building and executing a per-envelope `insert(outbox).values(...)` cost
more CPU (statement construction, cache keys, result wrapping, greenlet hops) than the round
trip itself. `PreparedOutbox` sends fixed SQL through asyncpg (its statement cache prepares
it once per connection) on the connection the unit of work checked out, inside the
transaction it opened there: the same rows in the same transaction, for less CPU.

asyncpg's connection carries SQLAlchemy's JSON codecs: a JSONB parameter takes JSON text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from events import catalog
from infra.db.outbox import SqlOutbox
from infra.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

if TYPE_CHECKING:
    import uuid

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncSession

    from events import Envelope, Message
    from infra.clock import Clock

OUTBOX_SQL = (
    "INSERT INTO outbox (id, type, version, occurred_at, aggregate_type, aggregate_id,"
    " aggregate_version, correlation_id, causation_id, actor, traceparent, data, exchange,"
    " routing_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
)


class PreparedOutbox(SqlOutbox):
    """`SqlOutbox` whose INSERT runs on the raw connection (envelopes built the same way)."""

    def __init__(self, session: AsyncSession, clock: Clock, connection: asyncpg.Connection) -> None:
        super().__init__(session, clock)
        self._connection = connection

    async def add(self, envelope: Envelope[Message]) -> uuid.UUID:
        """Insert an already built envelope; return its id."""
        await self._connection.execute(OUTBOX_SQL, *outbox_params(envelope))
        self.envelopes.append(envelope)
        return envelope.id


def outbox_params(envelope: Envelope[Message]) -> tuple[Any, ...]:
    """`OUTBOX_SQL`'s parameters for an envelope: the row `outbox_values` describes."""
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
