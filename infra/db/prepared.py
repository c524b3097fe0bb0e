"""The processor's writes: buffered in the unit of work, sent in ONE statement at commit.

A processed command writes its events to the outbox and its status; through SQLAlchemy that
was one statement (and round trip) per row, each costing more CPU to build than to run.
Here the envelopes and the status are kept until `flush()`, just before COMMIT, which sends
them as one data-modifying statement (the outbox rows through `unnest`, in the order they
were added, then the status upsert), on the unit of work's raw asyncpg connection (asyncpg
prepares it once per connection). Same rows, same transaction; one round trip for all the
outbox rows and the status instead of one per row.

asyncpg's connection carries SQLAlchemy's JSON codecs: a JSONB parameter takes JSON text.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from events import catalog
from infra.db.command_status import (
    GET_SQL,
    UPSERT_SQL,
    CommandState,
    status_from_row,
    upsert_sql,
)
from infra.db.outbox import EnvelopeOutbox
from infra.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

if TYPE_CHECKING:
    import uuid
    from collections.abc import Sequence

    import asyncpg

    from events import Actor, Envelope, Message
    from infra.clock import Clock
    from infra.db.command_status import CommandStatus

_ROWS = (
    "SELECT id, type, version, occurred_at, aggregate_type, aggregate_id, aggregate_version,"
    " correlation_id, causation_id, actor, traceparent, data, exchange, routing_key"
    " FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[], $5::text[],"
    " $6::uuid[], $7::bigint[], $8::uuid[], $9::uuid[], $10::jsonb[], $11::text[],"
    " $12::jsonb[], $13::text[], $14::text[]) WITH ORDINALITY AS r(id, type, version,"
    " occurred_at, aggregate_type, aggregate_id, aggregate_version, correlation_id,"
    " causation_id, actor, traceparent, data, exchange, routing_key, n) ORDER BY n"
)
_INSERT_ROWS = (
    "INSERT INTO outbox (id, type, version, occurred_at, aggregate_type, aggregate_id,"
    " aggregate_version, correlation_id, causation_id, actor, traceparent, data, exchange,"
    " routing_key) " + _ROWS
)
# The outbox rows and the status upsert in one statement (the CTE runs though unread).
OUTBOX_SQL = _INSERT_ROWS
OUTBOX_AND_STATUS_SQL = "WITH written AS (" + _INSERT_ROWS + " RETURNING 1) " + upsert_sql(15)


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

    def take_columns(self) -> list[list[Any]] | None:
        """The rows not flushed yet as 14 parallel arrays (`unnest`'s parameters), or None."""
        if not self._pending:
            return None
        rows, self._pending = list(map(outbox_params, self._pending)), []
        return [list(column) for column in zip(*rows, strict=True)]


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


class PreparedCommandStatuses:
    """The processor's command statuses (`infra.db.uow.CommandStatuses`): kept for `flush()`."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self.rows: dict[uuid.UUID, tuple[Any, ...]] = {}  # the last outcome per command

    async def record(
        self,
        command_id: uuid.UUID,
        *,
        type: str,  # noqa: A002  (the column's name)
        status: CommandState,
        result_event_ids: Sequence[uuid.UUID] = (),
        problem: dict[str, Any] | None = None,
        correlation_id: uuid.UUID | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Keep the outcome of `command_id` for the commit (a later one replaces it)."""
        self.rows.pop(command_id, None)
        self.rows[command_id] = (
            command_id,
            type,
            CommandState(status).value,
            list(result_event_ids),
            None if problem is None else json.dumps(problem),
            correlation_id,
            actor.model_dump_json() if actor else None,
        )

    async def get(self, command_id: uuid.UUID) -> CommandStatus | None:
        """The recorded outcome of `command_id` (kept ones written first), or None."""
        while self.rows:
            _, row = self.rows.popitem()
            await self._connection.execute(UPSERT_SQL, *row)
        found = await self._connection.fetchrow(GET_SQL, command_id)
        return None if found is None else status_from_row(found)


async def flush(
    connection: asyncpg.Connection, outbox: PreparedOutbox, statuses: PreparedCommandStatuses
) -> None:
    """Write the kept outbox rows and statuses: one statement for the usual one status."""
    rows = list(statuses.rows.values())
    statuses.rows.clear()
    columns = outbox.take_columns()
    if rows:
        empty: list[list[Any]] = [[] for _ in range(14)]
        await connection.execute(OUTBOX_AND_STATUS_SQL, *(columns or empty), *rows.pop(0))
    elif columns:
        await connection.execute(OUTBOX_SQL, *columns)
    for row in rows:  # more than one command's status in one unit: not the processor's case
        await connection.execute(UPSERT_SQL, *row)
